"""Who may call `ragtune api`, and which tenants each caller may read.

API keys come from a keys file (`api.keys_file`) and from the environment (`api.keys_env`,
by default RAGTUNE_API_KEYS). Each key is bound to the tenants it may read, so the tenant
of a request is what its key allows, never only what the request claims:

    # keys.yaml, named by api.keys_file
    support-bot:
      key: ${SUPPORT_BOT_KEY}    # the key itself, read from the environment
      tenants: [acme]
    reporting:
      key: sha256:5e8848...      # or only its SHA-256 digest (hex)
      tenants: ["*"]             # every tenant

    export RAGTUNE_API_KEYS="<key>=acme,globex <key2>=*"   # KEY=TENANT[,TENANT] ...

Clients send `Authorization: Bearer <key>`. Keys are held only as SHA-256 digests and
compared in constant time. A key naming one tenant reads that tenant when a request names
none; a request naming a tenant its key does not allow is refused (403). Without any key
the API serves localhost only, and a request's tenant is taken as given.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ragtune.api_schemas import TENANT_PATTERN
from ragtune.config import ApiConfig, _NoAliasLoader, expand_env
from ragtune.errors import ConfigError

ALL = "*"
TENANT = re.compile(TENANT_PATTERN)  # as a request may name one
KEY_TEXT = re.compile(r"^[\x21-\x7e]{16,512}$")  # printable ASCII, no spaces: fits a header
DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
LOOPBACK_NAMES = ("localhost",)


class Unauthorized(Exception):
    """No key, or one that is not configured: 401."""


class Forbidden(Exception):
    """A known key asking for a tenant it may not read: 403."""


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name (never the key), digest and readable tenants."""

    name: str
    digest: bytes
    tenants: frozenset[str]

    def tenant_for(self, requested: str | None) -> str | None:
        """The tenant a request reads: the one it names, if this key allows it; with none
        named, the key's only tenant (or None: untenanted rows only)."""
        if requested is not None:
            if ALL in self.tenants or requested in self.tenants:
                return requested
            allowed = ", ".join(sorted(self.tenants)) or "untenanted rows only"
            raise Forbidden(
                f"API key {self.name!r} may not read tenant {requested!r} (it may read: {allowed})"
            )
        if len(self.tenants) == 1 and ALL not in self.tenants:
            return next(iter(self.tenants))
        return None


# Without keys every caller is this one: whatever tenant a request names (localhost only).
ANYONE = ApiKey("anyone on this machine", b"", frozenset({ALL}))


@dataclass(frozen=True)
class KeyRing:
    """The configured keys; empty when none are (then the API stays on localhost)."""

    keys: tuple[ApiKey, ...] = ()
    origin: str = "no API keys"

    def __bool__(self) -> bool:
        return bool(self.keys)

    def identify(self, token: str | None) -> ApiKey:
        """The key a bearer token is, compared by digest in constant time (every key is
        compared, so the time does not say which one nearly matched)."""
        if not token:
            raise Unauthorized("missing API key: send the header 'Authorization: Bearer <key>'")
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        found = None
        for key in self.keys:
            if hmac.compare_digest(key.digest, digest):
                found = key
        if found is None:
            raise Unauthorized("unknown API key: send one from api.keys_file or the environment")
        return found


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    key: str
    tenants: list[str]


def load_keys(config: ApiConfig, environ: Mapping[str, str] | None = None) -> KeyRing:
    """Keys from `api.keys_file` and the `api.keys_env` variable; any problem is one
    ConfigError line (which never contains a key)."""
    environ = os.environ if environ is None else environ
    keys: list[ApiKey] = []
    origins = []
    if config.keys_file is not None:
        keys += _from_file(Path(config.keys_file))
        origins.append(f"api.keys_file {config.keys_file}")
    if environ.get(config.keys_env, "").strip():
        keys += _from_env(config.keys_env, environ[config.keys_env])
        origins.append(config.keys_env)
    seen: dict[bytes, str] = {}
    for key in keys:
        if key.digest in seen:
            raise ConfigError(
                f"API keys {seen[key.digest]!r} and {key.name!r} are the same key; "
                "give each caller its own"
            )
        seen[key.digest] = key.name
    return KeyRing(tuple(keys), " and ".join(origins) or "no API keys")


def _from_file(path: Path) -> list[ApiKey]:
    where = f"api.keys_file {path}"
    if not path.is_file():
        raise ConfigError(f"{where} not found; create it (see README, 'API keys') or unset it")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_NoAliasLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected key names at the top level (name: {{key, tenants}})")
    keys = []
    for name, value in raw.items():
        try:
            entry = _Entry.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "entry"
            raise ConfigError(
                f"{where}: {name}.{field}: {first['msg']} (write key: ..., tenants: [...])"
            ) from None
        keys.append(_key(str(name), entry.key, entry.tenants, where, from_file=True))
    return keys


def _from_env(variable: str, value: str) -> list[ApiKey]:
    keys = []
    for number, item in enumerate(value.split(), start=1):
        name = f"{variable} #{number}"
        if "=" not in item:
            raise ConfigError(
                f"{name} names no tenants: write KEY=TENANT[,TENANT] (KEY=* for every tenant, "
                "KEY= for untenanted rows only)"
            )
        secret, _, tenants = item.rpartition("=")  # a base64 key may end in '='; tenants never
        keys.append(_key(name, secret, [t for t in tenants.split(",") if t], "the environment"))
    return keys


def _key(
    name: str, written: str, tenants: list[str], where: str, from_file: bool = False
) -> ApiKey:
    for tenant in tenants:
        if tenant != ALL and not TENANT.match(tenant):
            raise ConfigError(
                f"API key {name!r} in {where}: tenant {tenant!r} is not a tenant name "
                "(letters, digits, _ . : -) or *"
            )
    digest = DIGEST.match(written)
    if digest:
        return ApiKey(name, bytes.fromhex(digest.group(1)), frozenset(tenants))
    if from_file:
        if "${" not in written:
            raise ConfigError(
                f"API key {name!r} in {where} is written in the file; put it in the environment "
                "and write key: ${NAME}, or store its digest as key: sha256:<hex>"
            )
        written = expand_env(written, f"{where}: {name}.key")
    if not KEY_TEXT.match(written):
        raise ConfigError(
            f"API key {name!r} in {where} must be 16 to 512 printable ASCII characters without "
            "spaces (e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return ApiKey(name, hashlib.sha256(written.encode("utf-8")).digest(), frozenset(tenants))


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, ring: KeyRing, config: ApiConfig) -> None:
    """Only localhost may be served without keys: anyone who can reach the port could
    otherwise name any tenant."""
    if not ring and not is_loopback(host):
        raise ConfigError(
            f"ragtune api on {host} needs API keys: set api.keys_file (or {config.keys_env}), "
            "or listen on 127.0.0.1"
        )


def binding_note(host: str, ring: KeyRing, config: ApiConfig) -> str:
    """The one line `ragtune api` prints at start: who may call it."""
    if ring:
        return f"ragtune api: {len(ring.keys)} API key(s) from {ring.origin}"
    return (
        f"ragtune api: no API keys (api.keys_file, {config.keys_env}): serving {host} only, "
        "and a request's tenant is taken as given"
    )
