"""The dashboard is served by the gateway at /ui/ without a key, / leads there, and /v1 still
needs one (the pages call it with the key the user signs in with)."""

from __future__ import annotations

from tests.unit.gateway.conftest import Gateway


async def test_the_root_redirects_to_the_dashboard(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        response = await http.get("/")
    assert response.status_code in (302, 307)
    assert response.headers["location"] == "/ui/"


async def test_the_dashboard_and_its_assets_are_served_without_a_key(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        page = await http.get("/ui/")
        script = await http.get("/ui/app.js")
        style = await http.get("/ui/app.css")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="app.js">' in page.text
    assert '<link rel="stylesheet" href="app.css"' in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    # every call of the pages goes to the gateway's own API with the signed-in key
    assert "Bearer" in script.text and "/v1" in script.text and "sessionStorage" in script.text
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")


async def test_the_pages_load_nothing_from_other_hosts(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        page = (await http.get("/ui/")).text
    assert "http://" not in page and "https://" not in page


async def test_an_unknown_asset_is_404_and_the_api_still_needs_a_key(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        missing = await http.get("/ui/nothing-here.js")
        api = await http.get("/v1/models")
    assert missing.status_code == 404
    assert api.status_code == 401


async def test_the_dashboard_is_not_in_the_openapi_document(gateway: Gateway) -> None:
    async with gateway.http(key=None) as http:
        document = (await http.get("/openapi.json")).json()
    assert "/" not in document["paths"] and not any(path.startswith("/ui") for path in document["paths"])
