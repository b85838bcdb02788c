"""The install flow's checks: callback signatures as Shopify makes them, age, shop domains,
the signed state cookie, scopes, and the code exchange's refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from stocksync.platforms.shopify.oauth import (
    MAX_CALLBACK_SKEW,
    InstallError,
    InstallState,
    callback_hmac,
    decode_state,
    encode_state,
    exchange_code,
    install_url,
    missing_scopes,
    normalise_shop,
    verify_callback,
)
from stocksync.sandbox.oauth import query_hmac

SECRET = "hush-secret"
NOW = 1_790_000_000.0


def signed(secret: str = SECRET, **overrides: str) -> dict[str, str]:
    params = {
        "code": "0907a61c0c8d55e99db179b68161bc00",
        "host": "YWRtaW4uc2hvcGlmeS5jb20vc3RvcmUvYWNtZQ",
        "shop": "acme.myshopify.com",
        "state": "nonce-1",
        "timestamp": str(int(NOW)),
    } | overrides
    # Computed independently of the code under test, from Shopify's description.
    message = "&".join(f"{k}={params[k]}" for k in sorted(params))
    params["hmac"] = hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()
    return params


def test_a_genuine_callback_is_accepted() -> None:
    params = signed()
    assert callback_hmac(params, SECRET) == query_hmac(params, SECRET) == params["hmac"]
    assert verify_callback(params, [SECRET], now=NOW) == "acme.myshopify.com"


def test_either_secret_of_a_rotation_verifies() -> None:
    assert verify_callback(signed("old"), [SECRET, "old"], now=NOW) == "acme.myshopify.com"
    with pytest.raises(InstallError, match="signature is wrong"):
        verify_callback(signed("old"), [SECRET], now=NOW)


@pytest.mark.parametrize("field", ["code", "shop", "state", "timestamp", "host"])
def test_any_tampered_parameter_is_refused(field: str) -> None:
    params = signed()
    params[field] = params[field] + "1"
    with pytest.raises(InstallError, match="signature is wrong"):
        verify_callback(params, [SECRET], now=NOW)


def test_added_parameter_and_missing_or_altered_hmac_are_refused() -> None:
    added = signed() | {"role": "source"}
    with pytest.raises(InstallError, match="signature is wrong"):
        verify_callback(added, [SECRET], now=NOW)
    unsigned = signed()
    del unsigned["hmac"]
    with pytest.raises(InstallError, match="not signed"):
        verify_callback(unsigned, [SECRET], now=NOW)
    flipped = signed()
    flipped["hmac"] = ("0" if flipped["hmac"][0] != "0" else "1") + flipped["hmac"][1:]
    with pytest.raises(InstallError, match="signature is wrong"):
        verify_callback(flipped, [SECRET], now=NOW)
    with pytest.raises(InstallError, match="not signed"):
        verify_callback(signed(), [], now=NOW)


def test_uppercase_hex_signature_is_the_same_signature() -> None:
    params = signed()
    params["hmac"] = params["hmac"].upper()
    assert verify_callback(params, [SECRET], now=NOW) == "acme.myshopify.com"


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (0.0, True),
        (MAX_CALLBACK_SKEW, True),
        (-MAX_CALLBACK_SKEW, True),
        (MAX_CALLBACK_SKEW + 1, False),
        (-MAX_CALLBACK_SKEW - 1, False),
        (86_400.0, False),
    ],
)
def test_timestamp_is_bounded_both_ways(offset: float, accepted: bool) -> None:
    params = signed(timestamp=str(int(NOW - offset)))
    if accepted:
        assert verify_callback(params, [SECRET], now=NOW) == "acme.myshopify.com"
    else:
        with pytest.raises(InstallError, match="expired"):
            verify_callback(params, [SECRET], now=NOW)


def test_unreadable_timestamp_is_refused() -> None:
    with pytest.raises(InstallError, match="no valid timestamp"):
        verify_callback(signed(timestamp="yesterday"), [SECRET], now=NOW)


@pytest.mark.parametrize(
    "shop",
    [
        "acme.myshopify.com.evil.com",
        "evil.com",
        "evil.com/acme.myshopify.com",
        "acme.myshopify.com@evil.com",
        "-acme.myshopify.com",
        "acme_store.myshopify.com",
        ".myshopify.com",
        "acme.myshopify.com\n",
        "acme.myshopify.com:8080",
    ],
)
def test_bad_shop_domains_are_refused_even_when_signed(shop: str) -> None:
    with pytest.raises(InstallError, match="not a Shopify shop domain"):
        verify_callback(signed(shop=shop), [SECRET], now=NOW)


def test_shop_domains_are_normalised() -> None:
    assert normalise_shop(" ACME-2.myshopify.com ") == "acme-2.myshopify.com"
    with pytest.raises(InstallError):
        normalise_shop(None)


def test_install_url_asks_for_scopes_redirect_and_state() -> None:
    url = install_url(
        "https://acme.myshopify.com",
        client_id="cid",
        scopes=["read_products", "write_inventory"],
        redirect_uri="https://sync.example.com/install/shopify/callback",
        state="n-1",
    )
    parsed = urlparse(url)
    assert f"{parsed.scheme}://{parsed.netloc}{parsed.path}" == (
        "https://acme.myshopify.com/admin/oauth/authorize"
    )
    assert {k: v for k, [v] in parse_qs(parsed.query).items()} == {
        "client_id": "cid",
        "scope": "read_products,write_inventory",
        "redirect_uri": "https://sync.example.com/install/shopify/callback",
        "state": "n-1",
    }


def test_state_cookie_round_trip_expiry_and_forgery() -> None:
    state = InstallState("nonce", "acme.myshopify.com", "source", NOW + 600)
    value = encode_state(SECRET, state)
    assert decode_state(SECRET, value, now=NOW) == state
    with pytest.raises(InstallError, match="took too long"):
        decode_state(SECRET, value, now=NOW + 601)
    with pytest.raises(InstallError, match="not issued by this server"):
        decode_state("another-secret", value, now=NOW)
    body, mac = value.split(".")
    forged = encode_state(SECRET, InstallState("nonce", "acme.myshopify.com", "hub", NOW + 600))
    with pytest.raises(InstallError, match="not issued by this server"):
        decode_state(SECRET, f"{forged.split('.')[0]}.{mac}", now=NOW)
    with pytest.raises(InstallError, match="did not start the install"):
        decode_state(SECRET, None, now=NOW)
    # A state cookie's MAC is not the callback's: one cannot stand in for the other.
    assert mac != callback_hmac({"b": body}, SECRET)


def test_write_scopes_imply_read_scopes() -> None:
    wanted = ["read_products", "write_products", "read_inventory", "read_locations"]
    assert missing_scopes(["write_products", "read_inventory"], wanted) == ["read_locations"]
    assert missing_scopes(["write_products", "read_inventory", "read_locations"], wanted) == []


async def test_code_exchange_answers_and_refusals() -> None:
    seen: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append(body)
        assert str(request.url) == "https://acme.myshopify.com/admin/oauth/access_token"
        if body["code"] == "good":
            return httpx.Response(
                200, json={"access_token": "shpua_x", "scope": "write_products,read_orders"}
            )
        if body["code"] == "no-token":
            return httpx.Response(200, json={"scope": "read_orders"})
        return httpx.Response(
            400,
            json={"error": "invalid_request", "error_description": "The code was already used"},
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        base = "https://acme.myshopify.com"
        grant = await exchange_code(http, base, client_id="cid", client_secret=SECRET, code="good")
        assert (grant.access_token, grant.scopes) == ("shpua_x", ("write_products", "read_orders"))
        assert seen[0] == {"client_id": "cid", "client_secret": SECRET, "code": "good"}
        with pytest.raises(InstallError, match=r"HTTP 400: The code was already used"):
            await exchange_code(http, base, client_id="cid", client_secret=SECRET, code="used")
        with pytest.raises(InstallError, match="no access token"):
            await exchange_code(http, base, client_id="cid", client_secret=SECRET, code="no-token")
        with pytest.raises(InstallError, match="carries no code"):
            await exchange_code(http, base, client_id="cid", client_secret=SECRET, code="")
    assert len(seen) == 3
