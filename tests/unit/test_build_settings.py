"""The settings of the sessions that rebuild deferred indexes (finish.build_settings): never below what
the target chose, more parallel workers only where cores and the target's worker slots are free."""

from confiture_fast.finish import build_settings

DEFAULTS = {"maintenance_work_mem": "65536", "max_parallel_maintenance_workers": "2", "max_parallel_workers": "8",
            "max_worker_processes": "8"}


def test_on_two_cores_a_default_target_keeps_its_own_workers_and_gets_256_mb():
    assert build_settings(DEFAULTS, builds=2, cores=2) == ("SET maintenance_work_mem = '262144kB'",)


def test_a_target_with_more_memory_keeps_it():
    assert build_settings({**DEFAULTS, "maintenance_work_mem": "2097152"}, builds=2, cores=2) == ()


def test_free_cores_give_each_build_more_workers_within_the_targets_slots():
    assert build_settings(DEFAULTS, builds=2, cores=16)[1:] == ("SET max_parallel_maintenance_workers = 4",)
    assert build_settings(DEFAULTS, builds=1, cores=16)[1:] == ("SET max_parallel_maintenance_workers = 8",)
    few_slots = {**DEFAULTS, "max_worker_processes": "4"}
    assert build_settings(few_slots, builds=1, cores=16)[1:] == ("SET max_parallel_maintenance_workers = 4",)


def test_busy_cores_never_lower_the_targets_own_choice():
    own = {**DEFAULTS, "max_parallel_maintenance_workers": "6"}
    assert build_settings(own, builds=8, cores=8)[1:] == ()
    assert build_settings({**DEFAULTS, "max_parallel_maintenance_workers": "0"}, builds=2, cores=2)[1:] == ()
