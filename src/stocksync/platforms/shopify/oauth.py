"""Shopify's OAuth install flow (authorization code grant), as the app side of it.

Shopify relies on:

* the merchant is sent to ``{shop}/admin/oauth/authorize?client_id&scope&redirect_uri&state``;
  Shopify redirects back to ``redirect_uri`` with ``code``, ``hmac``, ``host``, ``shop``,
  ``state`` and ``timestamp`` (and sometimes more);
* ``hmac`` is the hex HMAC-SHA256, keyed with the app's client secret, of every other query
  parameter sorted by name and joined as ``name=value`` with ``&`` (values as received,
  i.e. URL-decoded; a legacy ``signature`` parameter is excluded as well);
* ``shop`` must be a ``NAME.myshopify.com`` domain; anything else may point the code exchange
  (which carries the client secret) at a host an attacker controls;
* ``POST {shop}/admin/oauth/access_token`` with ``client_id``, ``client_secret`` and
  ``code`` answers ``{"access_token", "scope"}`` once: a code cannot be exchanged twice;
* the granted ``scope`` may differ from the requested one (a merchant-edited URL, implied
  scopes such as ``write_products`` covering ``read_products``).

The ``state`` nonce ties the callback to the browser that started the install: it is kept
in a cookie signed here (so that no table is needed) and compared with the callback's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlencode

import httpx

SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")

# The callback's timestamp may be this far from our clock, either way. Shopify redirects at
# once after the merchant approves, so a genuine callback is seconds old; five minutes covers
# clock skew between Shopify and this host and a slow browser, while a captured callback URL
# stops being replayable soon after (the code itself is also good only once).
MAX_CALLBACK_SKEW = 300.0

# An install the merchant has not finished within this time must start again.
STATE_LIFETIME = 600.0

DEFAULT_SCOPES = (
    "read_products,write_products,read_inventory,write_inventory,read_orders,read_locations"
)


class InstallError(ValueError):
    """The install request or callback is refused; the message says why, plainly."""


@dataclass(frozen=True)
class Grant:
    access_token: str
    scopes: tuple[str, ...]


@dataclass(frozen=True)
class InstallState:
    """What the signed state cookie carries from the install request to its callback."""

    nonce: str
    shop: str
    role: str
    expires: float


def normalise_shop(text: str | None) -> str:
    """The shop's ``NAME.myshopify.com`` domain, or :class:`InstallError`."""
    shop = (text or "").strip().lower()
    if not SHOP_DOMAIN.fullmatch(shop) or len(shop) > 255:
        raise InstallError(
            f"{text!r} is not a Shopify shop domain: expected NAME.myshopify.com "
            "(letters, digits and '-')"
        )
    return shop


def shop_base_url(template: str, shop: str) -> str:
    """The shop's base URL from a template such as ``https://{shop}``."""
    return template.replace("{shop}", shop).rstrip("/")


def scope_list(scopes: str | Sequence[str]) -> tuple[str, ...]:
    items = scopes.split(",") if isinstance(scopes, str) else scopes
    return tuple(s.strip() for s in items if s.strip())


def missing_scopes(granted: Sequence[str], wanted: Sequence[str]) -> list[str]:
    """Wanted scopes not granted. ``write_X`` implies ``read_X``, as Shopify grants it."""
    have = set(granted) | {"read_" + s[len("write_") :] for s in granted if s.startswith("write_")}
    return [s for s in wanted if s not in have]


def install_url(
    shop_base: str, *, client_id: str, scopes: Sequence[str], redirect_uri: str, state: str
) -> str:
    """Where to send the merchant to approve the install (offline access: no per-user grant)."""
    query = {
        "client_id": client_id,
        "scope": ",".join(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    }
    return f"{shop_base}/admin/oauth/authorize?{urlencode(query)}"


def callback_hmac(params: Mapping[str, str], secret: str) -> str:
    """The hex signature Shopify puts in a callback's ``hmac`` parameter."""
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("hmac", "signature"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


def verify_callback(
    params: Mapping[str, str],
    app_secrets: Sequence[str],
    *,
    now: float,
    max_skew: float = MAX_CALLBACK_SKEW,
) -> str:
    """Check a callback's signature, age and shop; return the shop domain.

    Each secret is tried (during a secret rotation either may sign), every comparison is
    constant-time and none exits early, so timing tells nothing about a near miss."""
    given = params.get("hmac", "")
    if not given or not app_secrets:
        raise InstallError("the install callback is not signed")
    given_bytes = given.strip().lower().encode("ascii", errors="replace")
    matched = False
    for secret in app_secrets:
        if secret:
            expected = callback_hmac(params, secret).encode("ascii")
            matched |= hmac.compare_digest(expected, given_bytes)
    if not matched:
        raise InstallError("the install callback's signature is wrong; start the install again")
    try:
        stamp = float(params.get("timestamp", ""))
    except ValueError:
        raise InstallError("the install callback has no valid timestamp") from None
    if abs(now - stamp) > max_skew:
        raise InstallError(
            "the install callback has expired (or this server's clock is wrong); "
            "start the install again"
        )
    shop = params.get("shop", "")
    # Exactly as signed: no trimming or case folding of what Shopify sent.
    if normalise_shop(shop) != shop:
        raise InstallError(f"{shop!r} is not a Shopify shop domain as Shopify writes it")
    return shop


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _state_mac(secret: str, body: str) -> str:
    # A key of its own (derived, labelled) so that a state cookie can never pass for a
    # callback or webhook signature made with the same app secret.
    key = hmac.new(secret.encode(), b"stocksync install state", hashlib.sha256).digest()
    return _b64(hmac.new(key, body.encode(), hashlib.sha256).digest())


def encode_state(secret: str, state: InstallState) -> str:
    """The signed cookie value carrying ``state``."""
    body = _b64(
        json.dumps(
            {"n": state.nonce, "s": state.shop, "r": state.role, "e": state.expires},
            separators=(",", ":"),
        ).encode()
    )
    return f"{body}.{_state_mac(secret, body)}"


def decode_state(secret: str, value: str | None, *, now: float) -> InstallState:
    """The state a cookie carries, if we signed it and it has not expired."""
    if not value or value.count(".") != 1:
        raise InstallError(
            "this browser did not start the install (no install cookie); start it again"
        )
    body, mac = value.split(".")
    if not hmac.compare_digest(_state_mac(secret, body).encode(), mac.encode()):
        raise InstallError("the install cookie was not issued by this server; start again")
    try:
        data = json.loads(_unb64(body))
        state = InstallState(str(data["n"]), str(data["s"]), str(data["r"]), float(data["e"]))
    except (ValueError, KeyError, TypeError):
        raise InstallError("the install cookie is unreadable; start the install again") from None
    if now > state.expires:
        raise InstallError("the install took too long; start it again")
    return state


async def exchange_code(
    http: httpx.AsyncClient,
    shop_base: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
) -> Grant:
    """Trade the callback's one-time code for an offline access token and its scopes.

    Not retried: a code is good once, so a second attempt after a lost answer can only fail;
    the merchant starts the install again instead."""
    if not code:
        raise InstallError("the install callback carries no code")
    try:
        response = await http.post(
            f"{shop_base}/admin/oauth/access_token",
            json={"client_id": client_id, "client_secret": client_secret, "code": code},
            headers={"Accept": "application/json"},
        )
    except httpx.HTTPError as exc:
        raise InstallError(f"the shop could not be reached to finish the install: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        reason = ""
        if isinstance(body, dict):
            reason = str(body.get("error_description") or body.get("error") or "")
        raise InstallError(
            f"the shop refused the install code (HTTP {response.status_code}"
            f"{': ' + reason if reason else ''}); codes are good once: start the install again"
        )
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise InstallError("the shop's answer carries no access token")
    return Grant(token, scope_list(str(body.get("scope") or "")))
