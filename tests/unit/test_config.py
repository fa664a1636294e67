"""config.py: real files in tmp_path, real process environment, libpq's own conninfo parser (no server)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict
from rich.pretty import pretty_repr

from confiture_fast.config import (
    Environment,
    RuleSpec,
    Rules,
    Secret,
    load_rules,
    load_secret,
    resolve_environment,
    split_table_name,
)
from confiture_fast.errors import ConfigError, ValidationError

PASSWORD = "Sup3r@S3cr:t/pw"

# The user guide's db/environments/production.yaml and local.yaml, verbatim.
GUIDE_PRODUCTION = """\
name: production
database:
  host: prod-db.example.com
  port: 5432
  database: myapp_production
  user: readonly_user
  password: ${PROD_DB_PASSWORD}  # From environment variable
"""

GUIDE_LOCAL = """\
name: local
database:
  host: localhost
  port: 5432
  database: myapp_local
  user: postgres
  password: postgres
"""

# The user guide's db/sync/anonymization.yaml, verbatim.
GUIDE_RULES = """\
# Table-level anonymization rules
users:
  - column: email
    strategy: email
    seed: 12345  # Reproducible anonymization

  - column: phone
    strategy: phone
    seed: 12345

  - column: full_name
    strategy: name
    seed: 12345

  - column: ssn
    strategy: redact  # Replace with [REDACTED]

  - column: password_hash
    strategy: hash  # One-way hash

orders:
  - column: billing_address
    strategy: redact

  - column: credit_card_last4
    strategy: redact

profiles:
  - column: bio
    strategy: redact  # May contain personal info

  - column: avatar_url
    strategy: redact
"""


@pytest.fixture
def env_dir(tmp_path: Path) -> Path:
    d = tmp_path / "db" / "environments"
    d.mkdir(parents=True)
    (d / "production.yaml").write_text(GUIDE_PRODUCTION)
    (d / "local.yaml").write_text(GUIDE_LOCAL)
    return d


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def config_error(fn, *args, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kwargs)
    return info.value


def assert_hidden(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text


# --------------------------------------------------------------------------- environment files


def test_guide_environment_with_variable_set(env_dir, monkeypatch):
    monkeypatch.setenv("PROD_DB_PASSWORD", PASSWORD)
    env = resolve_environment("production", env_dir)
    assert env == Environment(
        name="production",
        host="prod-db.example.com",
        port=5432,
        database="myapp_production",
        user="readonly_user",
        password=PASSWORD,
        protected=True,
        file=str(env_dir / "production.yaml"),
    )
    parsed = conninfo_to_dict(env.conninfo())
    assert parsed["password"] == PASSWORD
    assert parsed["host"] == "prod-db.example.com"
    assert parsed["port"] == "5432"
    assert parsed["dbname"] == "myapp_production"
    assert parsed["user"] == "readonly_user"
    assert env.display() == "prod-db.example.com:5432/myapp_production"


def test_guide_local_environment(env_dir):
    env = resolve_environment("local", env_dir)
    assert (env.name, env.host, env.port, env.database, env.user, env.password) == (
        "local", "localhost", 5432, "myapp_local", "postgres", "postgres",
    )
    assert not env.protected and not env.strict
    assert env.ssl_warning() is None


def test_unset_variable_names_variable_and_file(env_dir, monkeypatch):
    monkeypatch.delenv("PROD_DB_PASSWORD", raising=False)
    err = config_error(resolve_environment, "production", env_dir)
    text = err.render()
    assert "PROD_DB_PASSWORD" in text
    assert f"{env_dir / 'production.yaml'}:7" in text
    assert "export PROD_DB_PASSWORD=" in err.fix
    assert err.exit_code == 2


def test_variables_anywhere_in_string_values(tmp_path, monkeypatch):
    monkeypatch.setenv("DB_HOST", "db.internal")
    monkeypatch.setenv("DB_PORT", "6543")
    monkeypatch.setenv("DB_SUFFIX", "eu")
    write(
        tmp_path / "staging.yml",
        "name: staging\ndatabase:\n  host: ${DB_HOST}\n  port: ${DB_PORT}\n"
        "  database: app_${DB_SUFFIX}_staging\n  user: app\n",
    )
    env = resolve_environment("staging", tmp_path)
    assert (env.host, env.port, env.database) == ("db.internal", 6543, "app_eu_staging")


def test_all_unset_variables_reported_together(tmp_path, monkeypatch):
    for var in ("NOPE_A", "NOPE_B"):
        monkeypatch.delenv(var, raising=False)
    write(tmp_path / "x.yaml", "database:\n  host: ${NOPE_A}\n  database: d\n  password: ${NOPE_B}\n")
    text = config_error(resolve_environment, "x", tmp_path).render()
    assert "NOPE_A" in text and "NOPE_B" in text
    assert "x.yaml:2" in text and "x.yaml:4" in text


def test_port_override_for_ssh_tunnel(env_dir, monkeypatch):
    monkeypatch.setenv("PROD_DB_PASSWORD", PASSWORD)
    env = resolve_environment("production", env_dir, port=5433)
    assert env.port == 5433
    assert conninfo_to_dict(env.conninfo())["port"] == "5433"
    uri = resolve_environment("postgresql://u@h:5432/db", env_dir, port=6000)
    assert uri.port == 6000 and uri.name == uri.display() == "h:6000/db"
    with pytest.raises(ConfigError):
        resolve_environment("local", env_dir, port=70000)


def test_unknown_environment_lists_available_names(env_dir):
    (env_dir / "staging.yml").write_text("database:\n  database: s\n")
    err = config_error(resolve_environment, "stagin", env_dir)
    text = err.render()
    assert "'stagin'" in text
    assert "local, production, staging" in text
    assert "did you mean 'staging'" in text
    assert "--env-dir" in err.fix


def test_missing_environment_folder(tmp_path):
    err = config_error(resolve_environment, "production", tmp_path / "nowhere")
    text = err.render()
    assert "does not exist" in text
    assert "--env-dir" in text and "URI" in text


def test_yaml_syntax_error_has_file_and_line(tmp_path):
    write(
        tmp_path / "broken.yaml",
        f"name: broken\ndatabase:\n  host: h\n  password: {PASSWORD}\n  port: [5432\n",
    )
    err = config_error(resolve_environment, "broken", tmp_path)
    text = err.render()
    assert f"{tmp_path / 'broken.yaml'}:" in text
    assert "invalid YAML" in text
    assert_hidden(PASSWORD, text)
    line = int(text.split("broken.yaml:")[1].split(":")[0])
    assert 5 <= line <= 6


def test_wrong_shapes_name_file_and_key(tmp_path):
    write(
        tmp_path / "bad.yaml",
        f"database:\n  host: h\n  port: fivefourthreetwo\n  sslmod: require\n  password: {PASSWORD}\n"
        "  database: d\nprotected: perhaps\n",
    )
    err = config_error(resolve_environment, "bad", tmp_path)
    assert isinstance(err, ValidationError)
    text = err.render()
    assert "bad.yaml:3: database.port" in text
    assert "bad.yaml:4: database.sslmod: unknown key (did you mean 'sslmode'?)" in text
    assert "bad.yaml:7: protected" in text
    assert_hidden(PASSWORD, text)


@pytest.mark.parametrize(
    "body, expected",
    [
        ("database:\n  port: 5432\n  database: [a]\n", "database.database: expected text"),
        ("database:\n  host: h\n", "database name is missing"),
        ("name: x\n", "no database: section"),
        ("- a\n- b\n", "expected a mapping"),
        ("", "empty"),
        ("database:\n  database: d\n  sslmode: verify_full\n", "'verify_full' is not one of"),
        ("protectd: true\ndatabase:\n  database: d\n", "did you mean 'protected'"),
        ("database:\n  database: d\n  port: 0\n", "not a port number"),
    ],
)
def test_bad_environment_files(tmp_path, body, expected):
    write(tmp_path / "e.yaml", body)
    assert expected in config_error(resolve_environment, "e", tmp_path).render()


def test_other_confiture_keys_ignored_and_libpq_params_passed(tmp_path):
    write(
        tmp_path / "dev.yaml",
        "name: dev\ninclude_dirs: [db/schema]\ndatabase:\n  database: d\n  connect_timeout: 5\n"
        "  sslmode: verify-full\n  sslrootcert: /etc/ca.pem\n  sslcert: /c.pem\n  sslkey: /k.pem\n",
    )
    env = resolve_environment("dev", tmp_path)
    assert env.options == {"connect_timeout": "5"}
    parsed = conninfo_to_dict(env.conninfo())
    assert parsed["connect_timeout"] == "5"
    assert parsed["sslmode"] == "verify-full"
    assert parsed["sslrootcert"] == "/etc/ca.pem"
    assert (parsed["sslcert"], parsed["sslkey"]) == ("/c.pem", "/k.pem")


def test_database_url_in_environment_file(tmp_path, monkeypatch):
    monkeypatch.setenv("PW", PASSWORD.replace("@", "%40").replace(":", "%3A").replace("/", "%2F"))
    write(tmp_path / "u.yaml", "database_url: postgresql://app:${PW}@db:5439/app\n")
    env = resolve_environment("u", tmp_path)
    assert (env.host, env.port, env.database, env.user, env.password) == ("db", 5439, "app", "app", PASSWORD)


def test_environment_given_as_file_path(tmp_path):
    path = write(tmp_path / "somewhere.yaml", "database:\n  database: d\n")
    assert resolve_environment(str(path), tmp_path / "unused").database == "d"
    assert "does not exist" in config_error(resolve_environment, str(tmp_path / "nope.yaml"), tmp_path).message


def test_numbers_and_words_stay_text(tmp_path):
    write(tmp_path / "t.yaml", "database:\n  database: 2024\n  user: yes\n  password: 0123\n")
    env = resolve_environment("t", tmp_path)
    assert (env.database, env.user, env.password) == ("2024", "yes", "0123")


# --------------------------------------------------------------------------- protection


@pytest.mark.parametrize(
    "filename, body, protected",
    [
        ("production", "database:\n  database: d\n", True),
        ("prod", "database:\n  database: d\n", True),
        ("PROD", "database:\n  database: d\n", True),
        ("main", "name: production\ndatabase:\n  database: d\n", True),
        ("primary", "name: prod\ndatabase:\n  database: d\n", True),
        ("reporting", "protected: true\ndatabase:\n  database: d\n", True),
        ("production", "protected: false\ndatabase:\n  database: d\n", False),
        ("prod", "name: prod\nprotected: false\ndatabase:\n  database: d\n", False),
        ("staging", "database:\n  database: d\n", False),
        ("staging", "protected: false\ndatabase:\n  database: d\n", False),
    ],
)
def test_protected_environments(tmp_path, filename, body, protected):
    write(tmp_path / f"{filename}.yaml", body)
    env = resolve_environment(filename, tmp_path)
    assert env.protected is protected
    assert env.file == str(tmp_path / f"{filename}.yaml")


def test_strict_from_file(tmp_path):
    write(tmp_path / "s.yaml", "strict: true\ndatabase:\n  database: d\n")
    assert resolve_environment("s", tmp_path).strict is True


def test_uris_are_not_protected(env_dir):
    env = resolve_environment("postgresql://prod-db.example.com/production", env_dir)
    assert env.protected is False and env.file is None


# --------------------------------------------------------------------------- URIs and conninfo strings


@pytest.mark.parametrize(
    "spec, host, port, database, user, password, sslmode",
    [
        ("postgresql://u:pw@h:5433/db?sslmode=require", "h", 5433, "db", "u", "pw", "require"),
        ("postgres://bob@db.example.com/app", "db.example.com", None, "app", "bob", None, None),
        ("postgresql:///db?host=/var/run/postgresql", "/var/run/postgresql", None, "db", None, None, None),
        ("postgresql://%2Fvar%2Frun%2Fpostgresql/db", "/var/run/postgresql", None, "db", None, None, None),
        ("postgresql://u:p%40ss%3Aw%2Fd@h/db", "h", None, "db", "u", "p@ss:w/d", None),
        ("postgresql://[::1]:6000/db", "::1", 6000, "db", None, None, None),
        # left out: libpq decides (PGHOST / PGPORT, its default socket), as for psql
        ("postgresql:///db", None, None, "db", None, None, None),
        ("host=h port=5434 dbname=d user=u password='a b'", "h", 5434, "d", "u", "a b", None),
        ("dbname=d", None, None, "d", None, None, None),
    ],
)
def test_uris_and_conninfo(tmp_path, spec, host, port, database, user, password, sslmode):
    env = resolve_environment(spec, tmp_path)
    assert (env.host, env.port, env.database, env.user, env.password, env.sslmode) == (
        host, port, database, user, password, sslmode,
    )
    parsed = conninfo_to_dict(env.conninfo())
    assert parsed.get("host") == host and parsed["dbname"] == database
    assert parsed.get("password") == password
    assert env.name == env.display()


def test_unix_socket_display_is_socket_dir(tmp_path):
    env = resolve_environment("postgresql://u:pw@%2Ftmp%2Fpg/db", tmp_path)
    assert env.display() == "/tmp/pg:5432/db"
    assert env.is_loopback() and env.ssl_warning() is None


def test_other_uri_parameters_pass_through(tmp_path):
    env = resolve_environment(
        "postgresql://h/db?application_name=sync&connect_timeout=3&sslmode=verify-full&sslrootcert=/ca.pem", tmp_path
    )
    assert env.options == {"application_name": "sync", "connect_timeout": "3"}
    assert env.sslrootcert == "/ca.pem"
    parsed = conninfo_to_dict(env.conninfo())
    assert parsed["application_name"] == "sync" and parsed["sslrootcert"] == "/ca.pem"
    assert "fallback_application_name" in parsed


def test_ssl_warning_for_remote_hosts(tmp_path):
    assert "sslmode=prefer" in resolve_environment("postgresql://db.example.com/d", tmp_path).ssl_warning()
    assert resolve_environment("postgresql://db.example.com/d?sslmode=require", tmp_path).ssl_warning() is None
    assert resolve_environment("postgresql://127.0.0.1/d", tmp_path).ssl_warning() is None


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("postgresql://u:pw@h1,h2/db", "several hosts"),
        ("postgresql://u:pw@h:abc/db", "not a number"),
        ("postgresql://h/db?sslmode=sometimes", "sslmode"),
        ("postgresql://h/db?nosuch=1", "cannot parse"),
        ("host=h garbage", "cannot parse"),
        ("../etc/passwd", "neither an environment name"),
    ],
)
def test_bad_connection_strings(tmp_path, spec, expected):
    assert expected in config_error(resolve_environment, spec, tmp_path).render()


@pytest.mark.parametrize(
    "spec",
    [
        f"postgresq://u:{PASSWORD}@h/db",
        "postgresql://u:Sup3rS3cr/tpw@h/db",
        "postgresql://u:Sup3rS3cr%zz@h/db",
        "host=h password=Sup3rS3cr tpw",
        "host=h password='Sup3rS3cr",
        "postgresql://u:Sup3rS3cr@h/db?bogus=Sup3rS3cr",
    ],
)
def test_password_never_in_connection_string_errors(tmp_path, spec):
    err = config_error(resolve_environment, spec, tmp_path)
    assert_hidden("Sup3rS3cr", err.render(), str(err))


def test_password_never_in_repr_display_or_errors(env_dir, monkeypatch):
    monkeypatch.setenv("PROD_DB_PASSWORD", PASSWORD)
    envs = [
        resolve_environment("production", env_dir),
        resolve_environment("postgresql://readonly:Sup3r%40S3cr%3At%2Fpw@db/app?sslpassword=Sup3r@S3cr:t/pw", env_dir),
    ]
    for env in envs:
        assert env.password == PASSWORD
        assert_hidden(PASSWORD, repr(env), str(env), pretty_repr(env), env.display(), env.name)
        assert "readonly" not in env.display()
        assert "***" in repr(env)
    assert envs[1].options["sslpassword"] == PASSWORD
    assert "readonly_user" not in envs[0].display()


def test_password_never_in_file_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("PW", PASSWORD)
    write(tmp_path / "p.yaml", "database:\n  password: ${PW}\n  port: ${PW}\n  database: d\n")
    write(tmp_path / "q.yaml", f"database:\n  password: [{PASSWORD}]\n  database: d\n")
    write(tmp_path / "r.yaml", f'database:\n  password: "{PASSWORD}\n  database: d\n')
    for name in ("p", "q", "r"):
        assert_hidden(PASSWORD, config_error(resolve_environment, name, tmp_path).render())


# --------------------------------------------------------------------------- anonymization rules


def test_guide_rules_file(tmp_path):
    path = write(tmp_path / "anonymization.yaml", GUIDE_RULES)
    rules = load_rules(path)
    assert isinstance(rules, Rules) and rules.path == path
    assert list(rules.tables) == ["users", "orders", "profiles"]
    assert [(r.column, r.strategy, r.seed) for r in rules.tables["users"]] == [
        ("email", "email", "12345"),
        ("phone", "phone", "12345"),
        ("full_name", "name", "12345"),
        ("ssn", "redact", ""),
        ("password_hash", "hash", ""),
    ]
    assert rules.tables["users"][0] == RuleSpec(
        table="users", column="email", strategy="email", seed="12345", params={}, allow_duplicates=False, line=3
    )
    assert [r.line for r in rules.tables["orders"]] == [22, 25]
    assert [r.column for r in rules.tables["profiles"]] == ["bio", "avatar_url"]


def test_rules_schema_names_spaces_case_and_params(tmp_path):
    path = write(
        tmp_path / "r.yaml",
        "crm.Users list:\n"
        "  - column: Full Name\n"
        "    strategy: name\n"
        "    seed: tenant-a\n"
        "  - column: profile\n"
        "    strategy: json\n"
        "    paths: [phone, contact.email]\n"
        "    allow_duplicates: true\n"
        "Accounts:\n"
        "  - column: yes\n"
        "    strategy: redact\n"
        "accounts:\n"
        "  - column: iban\n"
        "    strategy: hash\n",
    )
    rules = load_rules(path)
    assert list(rules.tables) == ["crm.Users list", "Accounts", "accounts"]
    name, profile = rules.tables["crm.Users list"]
    assert (name.table, name.column, name.seed) == ("crm.Users list", "Full Name", "tenant-a")
    assert profile.params == {"paths": ["phone", "contact.email"]}
    assert profile.allow_duplicates is True and profile.line == 5
    assert rules.tables["Accounts"][0].column == "yes"


def test_all_rule_problems_reported_at_once(tmp_path):
    path = write(
        tmp_path / "bad.yaml",
        "users:\n"                     # 1
        "  - column: email\n"          # 2
        "    strategy: email\n"        # 3
        "  - column: email\n"          # 4
        "    strategy: hash\n"         # 5
        "  - strategy: redact\n"       # 6
        "  - column: phone\n"          # 7
        "    seed: [1]\n"              # 8
        "    allow_duplicates: maybe\n"  # 9
        "orders: redact\n"             # 10
        "crm.:\n"                      # 11
        "  - column: x\n"              # 12
        "    strategy: y\n"            # 13
        "profiles:\n"                  # 14
        "  - bio\n"                    # 15
        "  - column: bio\n"            # 16
        "    strategy:\n"              # 17
        "users:\n"                     # 18
        "  - column: z\n"              # 19
        "    strategy: redact\n",      # 20
    )
    with pytest.raises(ValidationError) as info:
        load_rules(path)
    problems = info.value.problems
    expected = [
        (4, "users.email: a second rule"),
        (6, "users: rule 3 has no column"),
        (7, "users.phone: rule 4 has no strategy"),
        (8, "users.phone: seed"),
        (9, "users.phone: allow_duplicates"),
        (10, "orders: expected a list of rules"),
        (11, "crm.: write the table as name or schema.name"),
        (15, "profiles: rule 1 should be a mapping"),
        (17, "profiles.bio: strategy must be a name"),
        (18, "'users' is given twice (first at line 1)"),
    ]
    assert len(problems) == len(expected)
    for problem, (line, text) in zip(problems, expected):
        assert problem.startswith(f"{path}:{line}: {text}"), problem
    assert info.value.exit_code == 2


@pytest.mark.parametrize("body", ["", "# only a comment\n", "{}\n"])
def test_empty_rules_file(tmp_path, body):
    with pytest.raises(ValidationError) as info:
        load_rules(write(tmp_path / "r.yaml", body))
    assert "no rules" in info.value.problems[0]


def test_rules_file_not_a_mapping_and_syntax_error(tmp_path):
    with pytest.raises(ValidationError) as info:
        load_rules(write(tmp_path / "list.yaml", "- users\n"))
    assert "expected a mapping" in info.value.problems[0]
    err = config_error(load_rules, write(tmp_path / "broken.yaml", "users:\n  - column: a\n   strategy: b\n"))
    assert f"{tmp_path / 'broken.yaml'}:3" in err.render()
    assert "does not exist" in config_error(load_rules, tmp_path / "missing.yaml").render()


def test_split_table_name():
    assert split_table_name("crm.Users list") == ((None, "crm.Users list"), ("crm", "Users list"))
    assert split_table_name("users") == ((None, "users"),)
    assert split_table_name("a.b.c") == ((None, "a.b.c"), ("a", "b.c"), ("a.b", "c"))


# --------------------------------------------------------------------------- the secret

SECRET_TEXT = "9f2c4e1a7b3d5c8e0f1a2b3c4d5e6f70"


def test_secret_from_environment(monkeypatch):
    monkeypatch.setenv("ANONYMIZATION_SECRET", SECRET_TEXT)
    secret = load_secret(None)
    assert secret.value == SECRET_TEXT.encode()
    assert secret.source == "ANONYMIZATION_SECRET"
    assert secret.warning() is None


def test_secret_file_wins_and_loses_one_newline(tmp_path, monkeypatch):
    monkeypatch.setenv("ANONYMIZATION_SECRET", "from-the-environment-not-used")
    path = write(tmp_path / "secret", SECRET_TEXT + "\n")
    assert load_secret(path).value == SECRET_TEXT.encode()
    path.write_bytes(b"abc\n\n")
    assert load_secret(path).value == b"abc\n"
    path.write_bytes(b"0123456789abcdef0123\r\n")
    assert load_secret(path).value == b"0123456789abcdef0123"


def test_missing_secret_says_how_to_create_one(monkeypatch):
    monkeypatch.delenv("ANONYMIZATION_SECRET", raising=False)
    err = config_error(load_secret, None)
    assert "ANONYMIZATION_SECRET" in err.message
    assert "openssl rand -hex 32" in err.fix and "--secret-file" in err.fix
    monkeypatch.setenv("ANONYMIZATION_SECRET", "")
    assert "empty" in config_error(load_secret, None).message


def test_bad_secret_files(tmp_path):
    assert "does not exist" in config_error(load_secret, tmp_path / "nope").message
    assert "cannot read" in config_error(load_secret, tmp_path).message
    assert "empty" in config_error(load_secret, write(tmp_path / "empty", "\n")).message


def test_short_secret_warns(monkeypatch):
    monkeypatch.setenv("ANONYMIZATION_SECRET", "tiny7")
    warning = load_secret(None).warning()
    assert warning and "5 bytes" in warning and "tiny7" not in warning
    monkeypatch.setenv("ANONYMIZATION_SECRET", "x" * 16)
    assert load_secret(None).warning() is None


def test_secret_fingerprint_and_repr(tmp_path):
    a = Secret(SECRET_TEXT.encode(), "test")
    fp = a.fingerprint()
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fp == Secret(SECRET_TEXT.encode(), "elsewhere").fingerprint()
    assert fp != Secret(SECRET_TEXT.encode() + b"!", "test").fingerprint()
    assert SECRET_TEXT[:8] not in fp and SECRET_TEXT[-8:] not in fp
    for text in (repr(a), str(a), pretty_repr(a), f"{a}"):
        assert SECRET_TEXT not in text and fp in text
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and copy.value == a.value
