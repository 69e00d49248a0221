"""Accounts and membership API against the real embedded database."""

from __future__ import annotations

import asyncio
import json
import urllib.parse

import pytest

from conf import ADMIN, PREMIUM

CUSTOMERS = "/api/mgr/customers"


async def make_admin(ctx, api, name: str = "root") -> str:
    await ctx.accounts.ensure_admin(name, "rootpass1")
    return await api.login(name, "rootpass1")


@pytest.mark.gen_test
async def test_register_returns_positive_increasing_ids(api):
    ids = []
    for name in ("alice", "bob_2", "c.d-e", "张三丰"):
        code, body = await api.register(name, phonenumber="123456789012", address="x@y.cn")
        assert (code, body["status"]) == (200, 0), body
        ids.append(body["id"])
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(set(ids))


@pytest.mark.gen_test
async def test_duplicate_name_is_409_with_seed_message(api):
    assert (await api.register("alice"))[0] == 200
    code, body = await api.register("alice", "otherpass")
    assert code == 409 and body == {"status": 1, "msg": "客户名已经存在", "code": "name_taken"}


@pytest.mark.gen_test(timeout=60)
async def test_twenty_concurrent_registrations_of_one_name(api):
    results = await asyncio.gather(*[api.register("racer", f"password{i}") for i in range(20)])
    codes = sorted(code for code, _ in results)
    assert codes == [200] + [409] * 19, results
    assert all(body["status"] == 1 for code, body in results if code == 409)


@pytest.mark.gen_test
@pytest.mark.parametrize("data, fragment", [
    ({"username": "ab", "password": "secret123"}, "username"),
    ({"username": "a" * 33, "password": "secret123"}, "username"),
    ({"username": "bad name", "password": "secret123"}, "username"),
    ({"username": "../etc", "password": "secret123"}, "username"),
    ({"username": "okname", "password": "123"}, "password"),
    ({"username": "okname", "password": "x" * 73}, "password"),
    ({"username": "okname", "password": "secret123", "phonenumber": "12ab"}, "phonenumber"),
    ({"username": "okname", "password": "secret123", "address": "not-an-email"}, "address"),
    ({"password": "secret123"}, "username"),
    ({"username": "okname"}, "password"),
    ({"username": 5, "password": "secret123"}, "username"),
    ({"username": "okname", "password": ["x"]}, "password"),
    ({"username": "x" * 1000, "password": "secret123"}, "username"),
])
async def test_register_rejects_bad_fields(api, data, fragment):
    code, body = await api.call("POST", CUSTOMERS, {"action": "add_customer", "data": data})
    assert code == 400 and body["status"] == 1 and fragment in body["msg"], body


@pytest.mark.gen_test
@pytest.mark.parametrize("raw, ctype, code", [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'{"data": {}}', "application/json", 400),
    (b'{"action": "fly"}', "application/json", 400),
    (b'{"action": 7}', "application/json", 400),
    (b'{"action": "add_customer", "data": "nope"}', "application/json", 400),
    (b'{"action": "add_customer", "data": [1]}', "application/json", 400),
    (b"\xff\xfe\x00", "application/json", 400),
    (b"<xml/>", "application/xml", 415),
])
async def test_malformed_bodies_get_the_envelope(api, raw, ctype, code):
    got, body = await api.call("POST", CUSTOMERS, raw=raw, headers={"Content-Type": ctype})
    assert got == code and body["status"] == 1 and isinstance(body["msg"], str), body


@pytest.mark.gen_test
async def test_get_without_action_and_unknown_route(api):
    code, body = await api.call("GET", CUSTOMERS)
    assert code == 400 and body["status"] == 1
    code, body = await api.call("GET", "/no/such/route")
    assert code == 404 and body["status"] == 1


@pytest.mark.gen_test
async def test_form_bodies_with_flat_fields(api):
    form = urllib.parse.urlencode({"action": "add_customer", "username": "formuser",
                                   "password": "secret123", "phonenumber": "13800000000"})
    code, body = await api.call("POST", CUSTOMERS, raw=form,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (code, body["status"]) == (200, 0), body
    boundary = "XyZ"
    multipart = "".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in {"action": "login", "data": json.dumps(
            {"username": "formuser", "password": "secret123"})}.items()) + f"--{boundary}--\r\n"
    code, body = await api.call(
        "POST", CUSTOMERS, raw=multipart,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert code == 200 and body["userdata"]["username"] == "formuser", body


@pytest.mark.gen_test
async def test_login_success_sets_httponly_cookie_and_token(api, http_client, base_url):
    await api.register("alice")
    resp = await http_client.fetch(base_url + CUSTOMERS, method="POST", body=json.dumps(
        {"action": "login", "data": {"username": "alice", "password": "secret123"}}))
    body = json.loads(resp.body)
    assert body["status"] == 0 and body["userdata"]["username"] == "alice"
    assert body["userdata"]["usertype"] == 1 and isinstance(body["userdata"]["id"], int)
    assert len(body["token"]) >= 32
    cookies = resp.headers.get_list("Set-Cookie")
    session = next(c for c in cookies if c.startswith("session="))
    assert "HttpOnly" in session and "SameSite=Lax" in session
    assert "password" not in resp.body.decode() and "hash" not in resp.body.decode()


@pytest.mark.gen_test
async def test_unknown_user_and_wrong_password_look_the_same(api):
    await api.register("alice")
    wrong = await api.call("POST", CUSTOMERS, {"action": "login",
                                               "data": {"username": "alice", "password": "nope12"}})
    unknown = await api.call("POST", CUSTOMERS, {"action": "login",
                                                 "data": {"username": "ghost", "password": "x"}})
    assert wrong == unknown and wrong[0] == 401 and wrong[1]["status"] == 1


@pytest.mark.gen_test
async def test_list_requires_login_and_admin(ctx, api):
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer")
    assert code == 401 and body["status"] == 1
    token = await api.user("alice")
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer", token=token)
    assert code == 403 and body["status"] == 1


@pytest.mark.gen_test
async def test_admin_lists_with_paging_and_search_without_secrets(ctx, api):
    admin = await make_admin(ctx, api)
    for i in range(5):
        await api.register(f"user{i}", phonenumber=f"1380000000{i}", address=f"u{i}@mail.cn")
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer&pagenum=2&pagesize=2",
                                token=admin)
    assert code == 200 and body["total"] == 6 and len(body["retlist"]) == 2
    assert [r["username"] for r in body["retlist"]] == ["user1", "user2"]
    assert set(body["retlist"][0]) == {"id", "username", "usertype", "phonenumber", "address",
                                       "disabled", "usage_bytes", "quota_bytes", "tasks",
                                       "active_tasks"}  # no password hash, no key
    assert body["retlist"][0]["disabled"] is False and body["retlist"][0]["tasks"] == 0
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer&keywords=u3@",
                                token=admin)
    assert body["total"] == 1 and body["retlist"][0]["username"] == "user3"
    code, body = await api.call("GET", CUSTOMERS + "?action=list_customer&keywords=.*",
                                token=admin)
    assert body["total"] == 0  # keywords are literal text, not a regular expression
    for bad in ("pagesize=0", "pagesize=1000", "pagenum=abc", "pagenum=-1"):
        code, body = await api.call("GET", f"{CUSTOMERS}?action=list_customer&{bad}", token=admin)
        assert code == 400 and body["status"] == 1, bad


@pytest.mark.gen_test
async def test_logout_invalidates_token(api):
    token = await api.user("alice")
    assert (await api.call("POST", CUSTOMERS, {"action": "logout"}, token=token))[0] == 200
    code, body = await api.call("POST", "/common/modifytype", {"userid": 1, "newtype": 100},
                                token=token)
    assert code == 401


@pytest.mark.gen_test
async def test_cookie_requests_need_xsrf(ctx, api, http_client, base_url):
    await ctx.accounts.ensure_admin("root", "rootpass1")
    resp = await http_client.fetch(base_url + CUSTOMERS, method="POST", body=json.dumps(
        {"action": "login", "data": {"username": "root", "password": "rootpass1"}}))
    body = json.loads(resp.body)
    cookie = "; ".join(c.split(";")[0] for c in resp.headers.get_list("Set-Cookie"))
    target = await api.register("bob")
    change = {"userid": target[1]["id"], "newtype": PREMIUM}
    code, reply = await api.call("POST", "/common/modifytype", change, headers={"Cookie": cookie})
    assert code == 403 and reply["status"] == 1 and "xsrf" in reply["msg"]
    code, reply = await api.call("POST", "/common/modifytype", change,
                                 headers={"Cookie": cookie, "X-XSRFToken": body["xsrf"]})
    assert (code, reply) == (200, {"status": 0})
    # a bearer request needs no XSRF token
    code, reply = await api.call("POST", "/common/modifytype", change, token=body["token"])
    assert code == 200


@pytest.mark.gen_test
async def test_modifytype(ctx, api):
    admin = await make_admin(ctx, api)
    code, reg = await api.register("bob")
    bob = await api.login("bob")
    path = "/common/modifytype"
    assert (await api.call("POST", path, {"userid": reg["id"], "newtype": PREMIUM},
                           token=bob))[0] == 403
    assert await api.call("POST", path, {"userid": reg["id"], "newtype": PREMIUM},
                          token=admin) == (200, {"status": 0})
    code, body = await api.call("POST", CUSTOMERS, {"action": "login", "data": {
        "username": "bob", "password": "secret123"}})
    assert body["userdata"]["usertype"] == PREMIUM
    for payload, expected in [
        ({"userid": reg["id"], "newtype": 5}, 400),
        ({"userid": 999999, "newtype": PREMIUM}, 404),
        ({"userid": "abc", "newtype": PREMIUM}, 400),
        ({"userid": True, "newtype": PREMIUM}, 400),
        ({"newtype": PREMIUM}, 400),
        ({"userid": reg["id"]}, 400),
        ({"userid": reg["id"], "newtype": 1.5}, 400),
    ]:
        code, body = await api.call("POST", path, payload, token=admin)
        assert code == expected and body["status"] == 1, (payload, body)
    assert (await api.call("POST", path, {"userid": str(reg["id"]), "newtype": "100"},
                           token=admin))[0] == 200


@pytest.mark.gen_test
async def test_admin_cannot_demote_self_and_create_admin_promotes(ctx, api):
    admin = await make_admin(ctx, api)
    user = await ctx.accounts.authenticate(admin)
    assert user.usertype == ADMIN
    code, body = await api.call("POST", "/common/modifytype", {"userid": user.id, "newtype": 1},
                                token=admin)
    assert code == 409
    await api.register("carol")
    user_id, created = await ctx.accounts.ensure_admin("carol", "newpass1")
    assert not created
    token = await api.login("carol", "newpass1")
    assert (await ctx.accounts.authenticate(token)).usertype == ADMIN


@pytest.mark.gen_test
async def test_passwords_are_stored_as_bcrypt_hashes(ctx, api):
    await api.register("alice", "secret123")
    doc = await ctx.repos.db.users.find_one({"username": "alice"})
    assert doc["password_hash"].startswith("$2b$") and "secret123" not in str(doc)


@pytest.mark.gen_test
async def test_healthz(api):
    code, body = await api.call("GET", "/healthz")
    assert (code, body) == (200, {"status": 0, "db": "ok"})


def test_default_bcrypt_cost_is_slow():
    from conf import Settings
    assert Settings().bcrypt_rounds >= 12
