import json
import urllib.request

from clickos_agent.httpapi import ApiServer, HttpError, JsonApi, TextBody


def make_api() -> JsonApi:
    api = JsonApi(token="s3cret")
    items: dict[str, dict] = {}

    @api.route("GET", "/v1/items/{name}")
    def get_item(request):
        if request.params["name"] not in items:
            raise HttpError(404, "no such item", field="name")
        return items[request.params["name"]]

    @api.route("POST", "/v1/items")
    def post_item(request):
        body = request.json()
        items[body["name"]] = body
        return 201, body

    @api.route("GET", "/v1/text")
    def text(request):
        return TextBody("# HELP x y\nx 1\n", "text/plain; version=0.0.4")

    return api


def test_routes_params_and_errors_name_the_field():
    api = make_api()
    auth = {"Authorization": "Bearer s3cret"}
    assert api.call("POST", "/v1/items", {"name": "a"}, auth) == (201, {"name": "a"})
    assert api.call("GET", "/v1/items/a") == (200, {"name": "a"})
    assert api.call("GET", "/v1/items/b") == (404, {"error": "no such item", "field": "name"})
    status, body = api.call("POST", "/v1/items", "{not json", auth)
    assert status == 400 and body["field"] == "body"
    assert api.call("DELETE", "/v1/items/a", None, auth)[0] == 405


def test_mutating_calls_need_the_token():
    api = make_api()
    status, body = api.call("POST", "/v1/items", {"name": "a"})
    assert status == 401 and body["field"] == "Authorization"
    assert api.call("POST", "/v1/items", {"name": "a"}, {"Authorization": "Bearer wrong"})[0] == 401


def test_serves_over_http_on_loopback():
    server = ApiServer(make_api(), "127.0.0.1", 0).start()
    try:
        request = urllib.request.Request(
            f"http://{server.address}/v1/items", data=json.dumps({"name": "x"}).encode(),
            headers={"Authorization": "Bearer s3cret", "Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert answer.status == 201
            assert json.loads(answer.read()) == {"name": "x"}
        with urllib.request.urlopen(f"http://{server.address}/v1/text", timeout=5) as answer:
            assert answer.headers["Content-Type"] == "text/plain; version=0.0.4"
            assert answer.read() == b"# HELP x y\nx 1\n"      # as is, not JSON
    finally:
        server.stop()
