"""The app's install flow: authorization code grant, signed as Shopify signs it.

`/admin/oauth/authorize` approves at once (there is no merchant to click "Install") and
redirects to the app's redirect URL with `code`, `hmac`, `host`, `shop`, `state` and
`timestamp`; `hmac` is the hex HMAC-SHA256, with the client secret, of the other parameters
sorted by name and joined as `key=value` with `&`. `/admin/oauth/access_token` exchanges a
code once for an offline access token and its scopes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlencode

if TYPE_CHECKING:
    from stocksync.sandbox.sandbox import Sandbox
    from stocksync.sandbox.state import Shop

CODE_LIFETIME = 600.0


@dataclass
class AppConfig:
    """The app that installs into the sandbox's shops (one app, one secret)."""

    client_id: str = "stocksync-sandbox-app"
    client_secret: str = "sandbox-secret"  # noqa: S105 (a sandbox default, not a credential)
    scopes: str = (
        "read_products,write_products,read_inventory,write_inventory,read_orders,"
        "write_orders,read_locations"
    )
    redirect_urls: list[str] = field(default_factory=list)
    customers_data_request_url: str | None = None
    customers_redact_url: str | None = None
    shop_redact_url: str | None = None


def query_hmac(params: dict[str, str], secret: str) -> str:
    message = "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("hmac", "signature"))
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class OAuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


@dataclass
class _Grant:
    shop: str
    scopes: str
    client_id: str
    expires_at: float


class OAuth:
    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self._codes: dict[str, _Grant] = {}

    def authorize(self, shop: Shop, params: dict[str, str]) -> str:
        """The URL to redirect to."""
        app = self.sandbox.app
        if params.get("client_id") != app.client_id:
            raise OAuthError(400, "invalid_request", "Unknown client_id")
        redirect = params.get("redirect_uri") or (app.redirect_urls[0] if app.redirect_urls else "")
        if not redirect:
            raise OAuthError(400, "invalid_request", "redirect_uri is required")
        if app.redirect_urls and redirect not in app.redirect_urls:
            raise OAuthError(
                400, "invalid_request", "The redirect_uri is not whitelisted for this app"
            )
        scopes = params.get("scope") or app.scopes
        code = secrets.token_hex(16)
        now = self.sandbox.clock.now()
        self._codes[code] = _Grant(shop.domain, scopes, app.client_id, now + CODE_LIFETIME)
        host = (
            base64.b64encode(f"admin.shopify.com/store/{shop.name}".encode()).decode().rstrip("=")
        )
        query = {
            "code": code,
            "host": host,
            "shop": shop.domain,
            "state": params.get("state", ""),
            "timestamp": str(int(now)),
        }
        query["hmac"] = query_hmac(query, app.client_secret)
        separator = "&" if "?" in redirect else "?"
        return redirect + separator + urlencode(query)

    def exchange(
        self, shop: Shop, client_id: str | None, client_secret: str | None, code: str | None
    ) -> dict[str, str]:
        app = self.sandbox.app
        if (
            client_id != app.client_id
            or not client_secret
            or not hmac.compare_digest(client_secret, app.client_secret)
        ):
            raise OAuthError(400, "invalid_client", "Client credentials are invalid")
        grant = self._codes.pop(code or "", None)  # a code is good once
        if (
            grant is None
            or grant.shop != shop.domain
            or grant.expires_at < self.sandbox.clock.now()
        ):
            raise OAuthError(
                400, "invalid_request", "The authorization code was not found or was already used"
            )
        token = f"shpua_{secrets.token_hex(16)}"
        shop.access_tokens[token] = grant.scopes
        return {"access_token": token, "scope": grant.scopes}
