"""Configuration read at the edge: environments, anonymization rules and the secret.

Everything the user typed or wrote is parsed and checked here, once, into frozen msgspec Structs;
the rest of the program trusts them. Passwords and the secret never appear in a message or repr.
"""

from __future__ import annotations

import difflib
import hmac
import ipaddress
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import yaml
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError, ValidationError

__all__ = [
    "Environment",
    "resolve_environment",
    "ProtectedEnvironment",
    "protected_environments",
    "RuleSpec",
    "Rules",
    "load_rules",
    "split_table_name",
    "TableNameError",
    "Secret",
    "load_secret",
    "SECRET_ENV_VAR",
]

SECRET_ENV_VAR = "ANONYMIZATION_SECRET"
PROTECTED_NAMES = frozenset({"production", "prod"})
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
_WEAK_SSL_MODES = frozenset({"disable", "allow", "prefer"})
_HIDDEN_OPTIONS = frozenset({"password", "sslpassword"})
_DB_KEYS = ("host", "port", "database", "user", "password", "sslmode", "sslrootcert", "sslcert", "sslkey")
_TOP_KEYS = ("name", "database", "database_url", "protected", "strict")
_LIBPQ_KEYS = frozenset(o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults())
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = re.compile(r"^\w[\w.-]*$")
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"
_STR_TAG = "tag:yaml.org,2002:str"
_BOOL_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


# --------------------------------------------------------------------------- environments


class Environment(msgspec.Struct, frozen=True, kw_only=True):
    """One database to connect to. `options` holds any other libpq parameter (e.g. `service`, `hostaddr`).

    host, port and database are None where a URI or conninfo string leaves them to libpq (a service
    file, PGHOST / PGPORT / PGDATABASE, its defaults), as psql does: what the connection really reached
    is checked on the connection itself (current_database(), the server's identity).
    `file` is the YAML it came from (None for a URI), so that errors can name the file to change.
    The password is left out of repr(); do not msgspec-encode an Environment (the encoder would include it).
    """

    name: str
    host: str | None = "localhost"
    port: int | None = 5432
    database: str | None = None
    user: str | None = None
    password: str | None = None
    sslmode: str | None = None
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    options: dict[str, str] = {}
    protected: bool = False
    strict: bool = False
    file: str | None = None

    def conninfo(self) -> str:
        """A libpq conninfo string for psycopg.connect; it contains the password, so never print it."""
        params: dict[str, Any] = {"fallback_application_name": "confiture-fast", **self.options}
        params.update(
            host=self.host,
            port=None if self.port is None else str(self.port),
            dbname=self.database,
            user=self.user,
            password=self.password,
            sslmode=self.sslmode,
            sslrootcert=self.sslrootcert,
            sslcert=self.sslcert,
            sslkey=self.sslkey,
        )
        return make_conninfo("", **{k: v for k, v in params.items() if v is not None})

    def libpq(self, key: str) -> str | None:
        """What libpq will use for host, port or dbname: ours, else the service's or PG* variable's
        (PQconndefaults), else None (host: libpq's default socket; dbname: the user name)."""
        mine = {"host": self.host, "port": self.port, "dbname": self.database}[key]
        if mine is not None:
            return str(mine)
        if "service" in self.options:
            return _service_value(self.options["service"], key)
        return _libpq_default(key)

    def display(self) -> str:
        """`host:port/dbname` for messages and logs: no user, no password. Parts left to libpq are shown
        as libpq will fill them in from the environment, or `service NAME` / `?` where that is unknown."""
        host, port, db = self.libpq("host"), self.libpq("port"), self.libpq("dbname")
        if host is not None and ":" in host and not host.startswith(("/", "@")):
            host = f"[{host}]"
        if host is None and port is None and db is None and "service" in self.options:
            return f"service {self.options['service']}"
        return f"{host or 'local socket'}:{port or '5432'}/{db or '?'}"

    def is_unix_socket(self) -> bool:
        host = self.libpq("host")
        return host is None or host.startswith(("/", "@"))

    def is_loopback(self) -> bool:
        """True for a unix socket, `localhost` or a loopback address: traffic that never leaves the machine.
        A service whose host is unknown counts as remote (the TLS warning errs on the safe side)."""
        host = self.libpq("host")
        if host is None and "service" in self.options:
            return False
        if self.is_unix_socket() or host.lower() == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False

    def ssl_warning(self) -> str | None:
        """A warning when a remote server is reached without required TLS (libpq's default is `prefer`)."""
        if self.is_loopback() or (self.sslmode or "prefer") not in _WEAK_SSL_MODES:
            return None
        where = f" (set sslmode in {self.file})" if self.file else " (add ?sslmode=verify-full to the URI)"
        who = f"{self.name}: " if self.file else ""
        return (
            f"{who}connecting to {self.display()} with sslmode={self.sslmode or 'prefer'}: "
            f"the connection may not be encrypted; use sslmode=require or verify-full{where}"
        )

    def __repr__(self) -> str:
        return "Environment(" + ", ".join(f"{k}={v!r}" for k, v in self.__rich_repr__()) + ")"

    __str__ = __repr__

    def __rich_repr__(self):
        yield "name", self.name
        yield "host", self.host
        yield "port", self.port
        yield "database", self.database
        yield "user", self.user
        yield "password", None if self.password is None else "***"
        for field in ("sslmode", "sslrootcert", "sslcert", "sslkey"):
            if getattr(self, field) is not None:
                yield field, getattr(self, field)
        if self.options:
            yield "options", {k: "***" if k in _HIDDEN_OPTIONS else v for k, v in self.options.items()}
        yield "protected", self.protected
        yield "strict", self.strict
        yield "file", self.file


def _libpq_default(key: str) -> str | None:
    """libpq's own value for a parameter nobody gave: its PG* variable (or PGSERVICE's entry), or its default."""
    try:
        defaults = psycopg.pq.Conninfo.get_defaults()
    except psycopg.Error:  # e.g. PGSERVICE names no entry: the connection will say so
        return None
    for option in defaults:
        if option.keyword.decode() == key:
            return option.val.decode() if option.val else None
    return None


def _service_value(service: str, key: str) -> str | None:
    """A parameter of a pg_service.conf entry, for display only: libpq reads the file itself to connect.
    The files and their order are libpq's: PGSERVICEFILE or ~/.pg_service.conf, then PGSYSCONFDIR's."""
    files = [Path(os.environ.get("PGSERVICEFILE") or Path.home() / ".pg_service.conf")]
    if os.environ.get("PGSYSCONFDIR"):
        files.append(Path(os.environ["PGSYSCONFDIR"]) / "pg_service.conf")
    for path in files:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            continue
        section, found = None, False
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("[") and line.endswith("]"):
                section = line[1:-1].strip()
                found = found or section == service
                continue
            name, eq, value = line.partition("=")
            if eq and section == service and name.strip() == key:
                return value.strip()
        if found:
            break
    return _libpq_default(key)


def resolve_environment(spec: str, env_dir: Path, *, port: int | None = None) -> Environment:
    """Turn a `--from`/`--to` value into an Environment: a name in env_dir, a URI or a conninfo string.

    `port` overrides the port (an SSH tunnel to the real server, the guide's `--source-port`).
    """
    spec = spec.strip()
    if not spec:
        raise ConfigError("empty database: give an environment name or a postgresql:// URI")
    if spec.startswith(("postgresql://", "postgres://")) or "=" in spec:
        env = _from_conninfo(spec)
    elif spec.endswith((".yaml", ".yml")):
        if not Path(spec).is_file():
            raise ConfigError(
                f"environment file {spec} does not exist",
                "give an existing file, or an environment name from the environments folder (--env-dir)",
            )
        env = _load_environment_file(Path(spec))
    elif _NAME.match(spec):
        env = _load_environment_file(_find_environment_file(spec, Path(env_dir)))
    else:
        # Never echo it: a mistyped URI may carry a password.
        raise ConfigError(
            "the database is neither an environment name nor a postgresql:// URI or key=value conninfo string",
            "give a name from the environments folder (e.g. --from production), "
            "or a URI such as postgresql://user@host:5432/dbname",
        )
    if port is not None:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigError(f"port {port!r} is not a TCP port number", "give a number between 1 and 65535")
        env = msgspec.structs.replace(env, port=port)
        if env.file is None:
            env = msgspec.structs.replace(env, name=env.display())
    return env


def _find_environment_file(name: str, env_dir: Path) -> Path:
    for suffix in (".yaml", ".yml"):
        candidate = env_dir / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    if not env_dir.is_dir():
        raise ConfigError(
            f"unknown environment {name!r}: the environments folder {env_dir} does not exist",
            f"create {env_dir}/{name}.yaml, point --env-dir at the folder that holds it, "
            "or pass a postgresql:// URI instead of a name",
        )
    names = sorted({p.stem for p in env_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()})
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    listing = ", ".join(names) if names else "none"
    raise ConfigError(
        f"unknown environment {name!r}{hint}: no {name}.yaml in {env_dir}; available: {listing}",
        f"use one of the names above, create {env_dir}/{name}.yaml, change the folder with --env-dir, "
        "or pass a postgresql:// URI",
    )


def _from_conninfo(spec: str) -> Environment:
    try:
        params = conninfo_to_dict(spec)
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else "unreadable"
        if "@" in spec or "password" in spec.lower():
            reason = re.sub(r'"[^"]*"', '"..."', reason)
        raise ConfigError(
            f"cannot parse the connection string: {reason}",
            "check its spelling; percent-encode special characters in a URI password (@ is %40, : is %3A)",
        ) from None
    params = {k: str(v) for k, v in params.items()}
    host = params.pop("host", "") or None
    if host is not None and "," in host:
        raise ConfigError(
            "a connection string with several hosts is not supported", "give the one server to use"
        )
    raw_port = params.pop("port", "") or None
    if raw_port is not None and (not raw_port.isdigit() or not 1 <= int(raw_port) <= 65535):
        # Not echoed: in a malformed URI the "port" can be a piece of the password.
        raise ConfigError(
            "the port in the connection string is not a number between 1 and 65535",
            "write it as postgresql://user@host:5432/dbname; percent-encode a password's / @ : characters",
        )
    # Whatever is left out is libpq's to fill in (service file, PG* variables, defaults), as for psql.
    database = params.pop("dbname", "") or None
    sslmode = params.pop("sslmode", None) or None
    if sslmode is not None and sslmode not in SSL_MODES:
        raise ConfigError(
            f"sslmode {sslmode!r} in the connection string is not one of libpq's modes", ", ".join(SSL_MODES)
        )
    env = Environment(
        name="",
        host=host,
        port=None if raw_port is None else int(raw_port),
        database=database,
        user=params.pop("user", None) or None,
        password=params.pop("password", None) or None,
        sslmode=sslmode,
        sslrootcert=params.pop("sslrootcert", None) or None,
        sslcert=params.pop("sslcert", None) or None,
        sslkey=params.pop("sslkey", None) or None,
        options=params,
    )
    return msgspec.structs.replace(env, name=env.display())


class ProtectedEnvironment(msgspec.Struct, frozen=True):
    """A protected environment of the env folder; `unset` maps a field to the ${VAR} it needs and lacks."""

    env: Environment
    unset: dict[str, str] = {}


def protected_environments(env_dir: Path) -> tuple[list[ProtectedEnvironment], list[str]]:
    """Every protected environment in env_dir (protected: true, or named production/prod), and a note
    for each file that may be protected but cannot be read. Read leniently: an unset ${VAR} leaves its
    field unknown instead of failing, so that a production file whose password is not exported here
    never stops an unrelated sync."""
    env_dir = Path(env_dir)
    if not env_dir.is_dir():
        return [], []
    found, notes = [], []
    for path in sorted(p for p in env_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file()):
        unset: dict[str, str] = {}
        try:
            env = _load_environment_file(path, unset)
        except ConfigError as e:
            if _maybe_protected(path):
                notes.append(f"{path}: {e.message.splitlines()[0]}")
            continue
        if env.protected:
            found.append(ProtectedEnvironment(env, unset))
    return found, notes


def _maybe_protected(path: Path) -> bool:
    if path.stem.lower() in PROTECTED_NAMES:
        return True
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and (doc.get("protected") is True or str(doc.get("name", "")).lower()
                                      in PROTECTED_NAMES)


# --------------------------------------------------------------------------- YAML helpers


def _compose(path: Path, what: str) -> Node | None:
    """Parse a YAML file into its node tree, which keeps line numbers for every value."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist", "check the path") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text", "save it as UTF-8") from None
    except OSError as e:
        reason = e.strerror or e
        raise ConfigError(f"cannot read {what} {path}: {reason}", "check the path and its permissions") from None
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        # Only problem/context: str(e) would quote the offending line, which may hold a password.
        detail = "; ".join(p for p in (e.context, e.problem) if p)
        raise ConfigError(f"{where}: invalid YAML: {detail}", "fix the YAML syntax at that line") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML", "fix the YAML syntax") from None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _kind(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if node.tag == _NULL_TAG:
        return "nothing"
    return {_BOOL_TAG: "a boolean", _INT_TAG: "a number"}.get(node.tag, "text")


def _mapping_pairs(node: MappingNode, path: Path, where: str, problems: list[str]) -> dict[str, tuple[Node, Node]]:
    """A mapping's scalar keys (as written) -> (key node, value node); duplicates and odd keys become problems."""
    pairs: dict[str, tuple[Node, Node]] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == _NULL_TAG or key_node.value == "":
            problems.append(f"{path}:{_line(key_node)}: {where}a key must be a name, not {_kind(key_node)}")
            continue
        key = key_node.value
        if key in pairs:
            first = _line(pairs[key][0])
            problems.append(f"{path}:{_line(key_node)}: {where}{key!r} is given twice (first at line {first})")
            continue
        pairs[key] = (key_node, value_node)
    return pairs


def _problems_to_error(title: str, problems: list[str], fix: str) -> ConfigError:
    if len(problems) == 1:
        return ConfigError(problems[0], fix)
    return ValidationError(title, problems, fix)


# --------------------------------------------------------------------------- environment files


def _load_environment_file(path: Path, unset: dict[str, str] | None = None) -> Environment:
    """The environment a file describes. With `unset` (a dict to fill), a ${VAR} that is not set
    leaves its field empty and is recorded as unset[key] = VAR instead of being an error."""
    root = _compose(path, "environment file")
    if root is None:
        raise ConfigError(f"{path}: the environment file is empty", "add a database: section (see the user guide)")
    if not isinstance(root, MappingNode):
        raise ConfigError(
            f"{path}:{_line(root)}: expected a mapping with name and database, found {_kind(root)}",
            "see the user guide's Environment Configuration",
        )
    problems: list[str] = []
    missing: list[tuple[str, int]] = []
    top = _mapping_pairs(root, path, "", problems)

    def text(key: str, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            problems.append(f"{path}:{_line(node)}: {key}: expected text, found {_kind(node)}")
            return None
        if node.tag == _NULL_TAG:
            return None
        before = len(missing)
        value = _substitute(node.value, _line(node), missing)
        if unset is not None and len(missing) > before:
            unset[key.split(".")[-1]] = missing[before][0]
            del missing[before:]
            return None
        return value

    def flag(key: str, node: Node) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == _BOOL_TAG:
            return _BOOL_WORDS[node.value.lower()]
        if isinstance(node, ScalarNode) and node.tag == _STR_TAG:
            value = _substitute(node.value, _line(node), missing).lower()
            if value in _BOOL_WORDS:
                return _BOOL_WORDS[value]
        problems.append(f"{path}:{_line(node)}: {key}: expected true or false, found {_kind(node)}")
        return None

    for key, (key_node, _) in top.items():
        close = difflib.get_close_matches(key, _TOP_KEYS, n=1, cutoff=0.75)
        if key not in _TOP_KEYS and close:
            # Other top-level keys belong to other confiture commands; a near-miss is a typo.
            problems.append(f"{path}:{_line(key_node)}: unknown key {key!r} (did you mean {close[0]!r}?)")

    name = (text("name", top["name"][1]) if "name" in top else None) or path.stem
    protected = flag("protected", top["protected"][1]) if "protected" in top else None
    strict = flag("strict", top["strict"][1]) if "strict" in top else None

    fields: dict[str, Any] = {}
    options: dict[str, str] = {}
    section = "database" if "database" in top else "database_url" if "database_url" in top else None
    if section is None:
        problems.append(f"{path}:{_line(root)}: no database: section (host, port, database, user, password)")
    elif isinstance(top[section][1], MappingNode):
        for key, (key_node, value_node) in _mapping_pairs(top[section][1], path, f"{section}.", problems).items():
            label = f"{section}.{key}"
            if key == "port":
                before = len(missing)
                fields["port"] = _port(value_node, label, path, problems, missing)
                if unset is not None and len(missing) > before:
                    unset["port"] = missing[before][0]
                    del missing[before:]
            elif key in _DB_KEYS:
                fields[key] = text(label, value_node) or None
                if key == "sslmode" and fields[key] not in (None, *SSL_MODES):
                    modes = ", ".join(SSL_MODES)
                    problems.append(f"{path}:{_line(value_node)}: {label}: {value_node.value!r} is not one of {modes}")
            elif key in _LIBPQ_KEYS and key != "dbname":
                options[key] = text(label, value_node) or ""
            else:
                close = difflib.get_close_matches(key, _DB_KEYS, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{path}:{_line(key_node)}: {label}: unknown key{hint}")
    else:
        # A URI or conninfo string in place of the mapping (the original confiture's database_url).
        node = top[section][1]
        url = text(section, node)
        if url and not missing:
            try:
                parsed = _from_conninfo(url)
            except ConfigError as e:
                problems.append(f"{path}:{_line(node)}: {section}: {e.message}")
            else:
                fields = {k: getattr(parsed, k) for k in _DB_KEYS}
                options = dict(parsed.options)
        elif not url and isinstance(node, ScalarNode) and section not in (unset or ()):
            problems.append(f"{path}:{_line(node)}: {section}: is empty")

    if missing:
        names = sorted({var for var, _ in missing})
        plural = len(names) > 1
        raise ConfigError(
            f"environment variable{'s' if plural else ''} {', '.join(names)} used in {path} "
            f"{'are' if plural else 'is'} not set\n"
            + "\n".join(f"  - {path}:{line}: ${{{var}}}" for var, line in missing),
            "export " + " ".join(f"{n}=..." for n in names) + " before running, or write the value in the file",
        )
    if section is not None and not problems and not fields.get("database") and not {"database", section} & set(unset or ()):
        problems.append(f"{path}:{_line(top[section][1])}: {section}.database: the database name is missing")
    if problems:
        raise _problems_to_error(f"{path}: invalid environment file", problems, "fix the file as listed")

    if protected is None:
        protected = path.stem.lower() in PROTECTED_NAMES or name.lower() in PROTECTED_NAMES
    # An unset ${VAR} (lenient reading only) leaves the address unknown, not the default one.
    unknown = set(unset or ()) & {"host", "port", "database_url"}
    port = fields.pop("port", None) or (None if unknown & {"port", "database_url"} else 5432)
    host = fields.pop("host", None) or (None if unknown & {"host", "database_url"} else "localhost")
    return Environment(
        name=name,
        host=host,
        port=port,
        options=options,
        protected=protected,
        strict=bool(strict),
        file=str(path),
        **fields,
    )


def _substitute(value: str, line: int, missing: list[tuple[str, int]]) -> str:
    """Replace each ${VAR} from os.environ; unset ones are collected by name, never by value."""

    def one(match: re.Match[str]) -> str:
        var = match.group(1)
        if var not in os.environ:
            missing.append((var, line))
            return ""
        return os.environ[var]

    return _VAR.sub(one, value)


def _port(node: Node, label: str, path: Path, problems: list[str], missing: list[tuple[str, int]]) -> int | None:
    if isinstance(node, ScalarNode) and node.tag in (_INT_TAG, _STR_TAG):
        raw = _substitute(node.value, _line(node), missing) if node.tag == _STR_TAG else node.value
        if raw.isdigit() and 1 <= int(raw) <= 65535:
            return int(raw)
        if not missing:
            # Quote what was written, not what a ${VAR} expanded to: that could be anything, even a password.
            problems.append(f"{path}:{_line(node)}: {label}: {node.value!r} is not a port number (1-65535)")
        return None
    problems.append(f"{path}:{_line(node)}: {label}: expected a port number, found {_kind(node)}")
    return None


# --------------------------------------------------------------------------- anonymization rules


class RuleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """One rule as written: shape checked here; strategy and params are checked by the planner."""

    table: str
    column: str
    strategy: str
    seed: str = ""
    params: dict[str, Any] = {}
    allow_duplicates: bool = False
    line: int = 0


class Rules(msgspec.Struct, frozen=True):
    """The rules file: table key (as written) -> its rules, both in file order."""

    path: Path
    tables: dict[str, tuple[RuleSpec, ...]]


_QUOTED_PART = re.compile(r'"((?:[^"]|"")+)"|([^."]+)')


class TableNameError(ValueError):
    """A table key that split_table_name cannot read."""


def split_table_name(key: str) -> tuple[tuple[str | None, str], ...]:
    """The (schema, name) pairs a table key can mean, schema None for a bare name.

    Spelled as in the catalog, no quoting: `users` -> the name; `crm.Customer List` -> schema crm, or a
    table whose name is the whole key (and `a.b.c` also ("a.b", "c")), which the catalog tells apart.
    With double quotes it means exactly one thing, SQL-style: `"a.b"` is the name a.b, `"a"."b"` and
    `a."b"` schema a, name b; `""` inside quotes is a quote. Raises TableNameError when malformed."""
    if '"' not in key:
        if not key or key.startswith(".") or key.endswith("."):
            raise TableNameError(key)
        splits = [(key[:i], key[i + 1:]) for i, ch in enumerate(key) if ch == "."]
        return ((None, key), *splits)
    parts, pos = [], 0
    while True:
        m = _QUOTED_PART.match(key, pos)
        if m is None:
            raise TableNameError(key)
        parts.append(m.group(1).replace('""', '"') if m.group(1) is not None else m.group(2))
        pos = m.end()
        if pos == len(key):
            break
        if key[pos] != "." or len(parts) == 2:
            raise TableNameError(key)
        pos += 1
    return ((None, parts[0]),) if len(parts) == 1 else ((parts[0], parts[1]),)


def load_rules(path: Path) -> Rules:
    """Read an anonymization rules file, reporting every shape problem at once with its line."""
    path = Path(path)
    root = _compose(path, "anonymization rules file")
    problems: list[str] = []
    tables: dict[str, tuple[RuleSpec, ...]] = {}
    if root is None or (isinstance(root, MappingNode) and not root.value):
        problems.append(f"{path}:1: the file has no rules")
    elif not isinstance(root, MappingNode):
        problems.append(
            f"{path}:{_line(root)}: expected a mapping of table -> list of rules, found {_kind(root)}"
        )
    else:
        constructor = SafeConstructor()
        for table, (key_node, value_node) in _mapping_pairs(root, path, "", problems).items():
            try:
                split_table_name(table)
            except TableNameError:
                problems.append(f"{path}:{_line(key_node)}: {table}: write the table as name or schema.name, "
                                'double-quoting a part that holds a dot (\'"a.b"\', \'"a"."b"\')')
                continue
            if not isinstance(value_node, SequenceNode):
                problems.append(
                    f"{path}:{_line(value_node)}: {table}: expected a list of rules "
                    f"(- column: ... strategy: ...), found {_kind(value_node)}"
                )
                continue
            tables[table] = _table_rules(table, value_node, path, constructor, problems)
    if problems:
        prefix = len(f"{path}:")
        problems.sort(key=lambda p: int(p[prefix:].split(":", 1)[0]))
        raise ValidationError(
            f"{path}: {len(problems)} problem{'s' if len(problems) > 1 else ''} in the anonymization rules",
            problems,
            "fix each rule as listed; each rule is '- column: NAME' and 'strategy: NAME' under its table",
        )
    return Rules(path=path, tables=tables)


def _table_rules(
    table: str, seq: SequenceNode, path: Path, constructor: SafeConstructor, problems: list[str]
) -> tuple[RuleSpec, ...]:
    rules: list[RuleSpec] = []
    first_line: dict[str, int] = {}
    for index, item in enumerate(seq.value, 1):
        if not isinstance(item, MappingNode):
            problems.append(
                f"{path}:{_line(item)}: {table}: rule {index} should be a mapping with column and strategy, "
                f"found {_kind(item)}"
            )
            continue
        before = len(problems)
        pairs = _mapping_pairs(item, path, f"{table}: ", problems)
        column = _rule_name(pairs, "column", path, item, problems, table, index)
        where = f"{table}.{column}" if column else table
        strategy = _rule_name(pairs, "strategy", path, item, problems, where, index)
        seed = ""
        if "seed" in pairs:
            node = pairs["seed"][1]
            if isinstance(node, ScalarNode) and node.tag == _INT_TAG:
                seed = str(constructor.construct_object(node))
            elif isinstance(node, ScalarNode) and node.tag == _STR_TAG:
                seed = node.value
            else:
                problems.append(f"{path}:{_line(node)}: {where}: seed must be a number or text, found {_kind(node)}")
        allow_duplicates = False
        if "allow_duplicates" in pairs:
            node = pairs["allow_duplicates"][1]
            if isinstance(node, ScalarNode) and node.tag == _BOOL_TAG:
                allow_duplicates = bool(constructor.construct_object(node))
            else:
                problems.append(
                    f"{path}:{_line(node)}: {where}: allow_duplicates must be true or false, found {_kind(node)}"
                )
        params: dict[str, Any] = {}
        for key, (_, node) in pairs.items():
            if key in ("column", "strategy", "seed", "allow_duplicates"):
                continue
            try:
                params[key] = constructor.construct_object(node, deep=True)
            except ConstructorError as e:
                problems.append(f"{path}:{_line(node)}: {where}: {key}: {e.problem or 'unreadable value'}")
        if column is not None:
            if column in first_line:
                problems.append(
                    f"{path}:{_line(item)}: {where}: a second rule for this column (first at line {first_line[column]})"
                )
            else:
                first_line[column] = _line(item)
        if len(problems) == before and column is not None and strategy is not None:
            rules.append(
                RuleSpec(
                    table=table,
                    column=column,
                    strategy=strategy,
                    seed=seed,
                    params=params,
                    allow_duplicates=allow_duplicates,
                    line=_line(item),
                )
            )
    return tuple(rules)


def _rule_name(
    pairs: dict[str, tuple[Node, Node]],
    key: str,
    path: Path,
    item: MappingNode,
    problems: list[str],
    where: str,
    index: int,
) -> str | None:
    """A rule's column or strategy, as written (a column named `yes` or `2024` stays text)."""
    if key not in pairs:
        problems.append(f"{path}:{_line(item)}: {where}: rule {index} has no {key}")
        return None
    node = pairs[key][1]
    if key == "strategy" and isinstance(node, ScalarNode) and node.value != "" and node.tag != _STR_TAG \
            and node.style is None:
        problems.append(_unquoted_strategy(node, path, where))
        return None
    if not isinstance(node, ScalarNode) or node.tag == _NULL_TAG or node.value == "":
        problems.append(f"{path}:{_line(node)}: {where}: {key} must be a name, found {_kind(node)}")
        return None
    return node.value


def _unquoted_strategy(node: ScalarNode, path: Path, where: str) -> str:
    """A strategy YAML read as something else than text (`null`, `~`, `no`, `on`, `1`): suggest quoting."""
    value = node.value
    if node.tag == _NULL_TAG:
        return (f"{path}:{_line(node)}: {where}: strategy: {value} is YAML for \"nothing\", not a strategy name; "
                f"to blank the column write strategy: \"null\" (quoted)")
    read_as = {_BOOL_TAG: "a boolean", _INT_TAG: "a number"}.get(node.tag, "a number" if "float" in node.tag
                                                                 else "another YAML type")
    return (f"{path}:{_line(node)}: {where}: strategy: {value} is read by YAML as {read_as}, not a strategy name; "
            f"quote it (strategy: \"{value}\") if it is one, or give a strategy name")


# --------------------------------------------------------------------------- the secret


class Secret:
    """The key of the keyed strategies. Its bytes are never shown; logs and checkpoints use fingerprint()."""

    __slots__ = ("_value", "source")

    _FINGERPRINT_LABEL = b"confiture-fast secret fingerprint v1"

    def __init__(self, value: bytes, source: str):
        self._value = bytes(value)
        self.source = source

    @property
    def value(self) -> bytes:
        return self._value

    def fingerprint(self) -> str:
        """16 hex digits: HMAC-SHA256 of a fixed label keyed by the secret; tells secrets apart, reveals nothing."""
        return hmac.new(self._value, self._FINGERPRINT_LABEL, "sha256").hexdigest()[:16]

    def warning(self) -> str | None:
        if len(self._value) >= 16:
            return None
        return (
            f"the anonymization secret from {self.source} is only {len(self._value)} bytes: "
            "short secrets can be guessed; use 32 random bytes (openssl rand -hex 32)"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self.fingerprint())

    def __repr__(self) -> str:
        return f"Secret(source={self.source!r}, fingerprint={self.fingerprint()!r})"

    __str__ = __repr__

    def __rich_repr__(self):
        yield "source", self.source
        yield "fingerprint", self.fingerprint()


def load_secret(secret_file: Path | None) -> Secret:
    """The secret from --secret-file when given, else from $ANONYMIZATION_SECRET."""
    create = f"export {SECRET_ENV_VAR}=$(openssl rand -hex 32), or pass --secret-file PATH"
    if secret_file is not None:
        path = Path(secret_file)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"the secret file {path} does not exist",
                f"create it: openssl rand -hex 32 > {path} && chmod 600 {path}",
            ) from None
        except OSError as e:
            raise ConfigError(
                f"cannot read the secret file {path}: {e.strerror or e}", "check the path and its permissions"
            ) from None
        if data.endswith(b"\n"):
            data = data[:-1]
            if data.endswith(b"\r"):
                data = data[:-1]
        if not data:
            raise ConfigError(
                f"the secret file {path} is empty", f"fill it: openssl rand -hex 32 > {path} && chmod 600 {path}"
            )
        return Secret(data, str(path))
    value = os.environb.get(SECRET_ENV_VAR.encode()) if os.supports_bytes_environ else None
    if value is None and not os.supports_bytes_environ:
        text = os.environ.get(SECRET_ENV_VAR)
        value = None if text is None else text.encode()
    if value is None:
        raise ConfigError(
            f"the keyed anonymization strategies need a secret, and {SECRET_ENV_VAR} is not set", create
        )
    if not value:
        raise ConfigError(f"{SECRET_ENV_VAR} is set but empty", create)
    return Secret(value, SECRET_ENV_VAR)
