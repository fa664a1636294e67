"""Builds the compiled hot path: the COPY-text rewriter and the libpq COPY pump."""
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup


def _pg_config(flag: str) -> str:
    try:
        return subprocess.check_output(["pg_config", flag], text=True).strip()
    except (OSError, subprocess.CalledProcessError):
        raise SystemExit("pg_config not found: install libpq's headers (Debian: apt-get install libpq-dev)")


_libpq = dict(
    include_dirs=[_pg_config("--includedir")],
    library_dirs=[_pg_config("--libdir")],
    libraries=["pq"],
)
_cflags = ["-O3"]

extensions = [
    Extension("confiture_fast._anon", ["src/confiture_fast/_anon.pyx"], extra_compile_args=_cflags),
    Extension("confiture_fast._pump", ["src/confiture_fast/_pump.pyx"], extra_compile_args=_cflags, **_libpq),
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    )
)
