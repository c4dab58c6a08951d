"""redact() and redact_text(): the shapes secrets take in logs, spans and health bodies."""

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_observe import redaction
from django_observe.redaction import REDACTED, is_secret_key, redact, redact_text


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("{'password': 'xsecretx'}", "xsecretx"),
        ('{"password":"xsecretx"}', "xsecretx"),
        ("args {'password': 'xsecretx', 'user': 'bob'}", "xsecretx"),
        ("password='correct horse battery'", "horse battery"),
        ('password="correct horse battery"', "horse battery"),
        ("password='correct horse battery'", "correct"),
        ("postgres://app:p@ss@db/app", "ss@db"),
        ("postgres://app:p@ss@db/app", "p@ss"),
        ("redis://:pa/ss@cache:6379", "pa/ss"),
        ("amqp://guest:BROKERPW@rabbit:5672//", "BROKERPW"),
        ("dbpassword=hunter2", "hunter2"),
        ("authtoken=hunter2", "hunter2"),
        ("accesstoken: hunter2", "hunter2"),
        ("pwd=hunter2", "hunter2"),
        ("secret_key=hunter2", "hunter2"),
        ("private_key=hunter2", "hunter2"),
        ("client_secret=hunter2", "hunter2"),
        ("sessionid=hunter2; csrftoken=other1", "other1"),
        ("<WSGIRequest: GET '/nope?token=SECRETQ&password=PWQ'>", "SECRETQ"),
        ("<WSGIRequest: GET '/nope?token=SECRETQ&password=PWQ'>", "PWQ"),
        ("Authorization: Bearer abc.def-ghi", "abc.def-ghi"),
        # Django prints the path percent-encoded (`=` becomes %3D) and the query string as it came.
        ("<WSGIRequest: GET '/reset/token%3DSECRETP/done'>", "SECRETP"),
        ("<WSGIRequest: GET '/x?q=%7B%22dbpassword%22%3A%20%22SECRETJ%22%2C%20%22page%22%3A%202%7D'>", "SECRETJ"),
        ("<WSGIRequest: GET '/x?h=Bearer%20SECRETB'>", "SECRETB"),
        ("<WSGIRequest: GET '/x?h=Bearer+SECRETB'>", "SECRETB"),
        # A repr or JSON text inside another string: its quotes are escaped.
        ("[{'note': '{\\'Authorization\\': \\'SECRETR\\'}'}]", "SECRETR"),
        ("{'note': '{\\'refresh-token\\': \\'SECRETR\\'}', 'page': 2}", "SECRETR"),
        ('{"body": "{\\"password\\": \\"SECRETE\\", \\"page\\": 2}"}', "SECRETE"),
    ],
)
def test_redact_text_shapes(text, secret):
    out = redact_text(text)
    assert secret not in out, out
    assert REDACTED in out


def test_escaped_and_encoded_pairs_keep_what_follows():
    assert redact_text("{'note': '{\\'token\\': \\'s3\\\\'x\\'}', 'page': 2}").endswith("'page': 2}")
    assert redact_text('{"body": "{\\"password\\": \\"s3\\"}", "page": 2}') == (
        '{"body": "{\\"password\\": \\"[REDACTED]\\"}", "page": 2}'
    )
    assert redact_text("GET /x?q=%7B%22token%22%3A%22s3%22%7D&page=2") == (
        "GET /x?q=%7B%22token%22%3A%22[REDACTED]%22%7D&page=2"
    )
    assert redact_text("/reset/token%3Ds3 done") == "/reset/token%3D[REDACTED] done"


def test_harmless_text_is_kept():
    for text in ("tokens_used=3", "monkey=5", "Cannot connect to PostgreSQL at db:5432", "GET /items?page=2"):
        assert redact_text(text) == text


@pytest.mark.parametrize(
    "key",
    [
        "dbpassword",
        "authtoken",
        "accesstoken",
        "pwd",
        "secret_key",
        "private_key",
        "api_key",
        "apikey",
        "client_secret",
        "session",
        "sessionid",
        "cookie",
        "Authorization",
        "X-Api-Key",
        "accessToken",
    ],
)
def test_secret_key_names(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["tokens_used", "monkey", "path", "status", "user_id", "passenger_count"])
def test_harmless_key_names(key):
    assert not is_secret_key(key)


def test_extra_keys_reach_keys_and_text():
    assert not is_secret_key("ssn")
    assert is_secret_key("ssn", ["SSN"])
    assert redact_text("ssn=123-45", ["ssn"]) == f"ssn={REDACTED}"
    assert redact({"ssn": "123", "nested": ["ssn: 9"]}, ["ssn"]) == {"ssn": REDACTED, "nested": [f"ssn: {REDACTED}"]}


class _Holder:
    def __str__(self):
        return "https://u:OBJPW@h/?token=OBJTOKEN"


def test_redact_nested_structures_and_objects():
    value = {
        "headers": {"Authorization": "Bearer HDRTOKEN", "Cookie": "sessionid=COOKIEVAL"},
        "payload": {"password": "PAYLOADPW", "items": [{"api_key": "LISTKEY"}, "dsn=postgres://a:URLPW@db"]},
        "obj": _Holder(),
        "count": 3,
        "ok": True,
        "none": None,
        "tuple": ("token=TUPLETOKEN",),
    }
    out = redact(value)
    text = repr(out)
    for secret in ("HDRTOKEN", "COOKIEVAL", "PAYLOADPW", "LISTKEY", "URLPW", "OBJPW", "OBJTOKEN", "TUPLETOKEN"):
        assert secret not in text
    assert out["count"] == 3 and out["ok"] is True and out["none"] is None


def test_redact_cycles_and_depth():
    cyclic: dict = {}
    cyclic["self"] = cyclic
    assert "self" in redact(cyclic)


# Planted secrets: a marker that no key or separator can contain.
_SECRET = st.text(alphabet=string.ascii_letters + string.digits + "!#$%*+-./:@^_~", min_size=4, max_size=16).map(
    lambda s: "Zq" + s + "Qz"
)
_SECRET_QUOTED = st.text(alphabet=string.ascii_letters + string.digits + " @/:=&;,", min_size=1, max_size=16).map(
    lambda s: "Zq" + s + "Qz"
)
_KEY = st.sampled_from(
    ["password", "token", "api_key", "secret_key", "dbpassword", "authtoken", "pwd", "sessionid", "Authorization"]
)
_FILLER = st.text(alphabet=string.ascii_lowercase + " .,-", max_size=20)


def _shapes(key: str, secret: str, quoted: str) -> list[str]:
    bare = secret.replace(":", "").replace("@", "").replace("/", "")
    bare = bare if len(bare) > 4 else "ZqbareQz"
    return [
        f"{key}={bare}",
        f"{key}: {bare}",
        f"?a=1&{key}={bare}&b=2",
        f"{key}='{quoted}'",
        f'{key}="{quoted}"',
        f"{{'{key}': '{quoted}'}}",
        f'{{"{key}":"{quoted}"}}',
        f"postgres://app:{secret}@db:5432/app",
        f"redis://:{secret}@cache",
        f"<QueryDict: {{'{key}': ['{quoted}', 'ZqmoreQz']}}>",
        f"{{'{key}': ('{quoted}',)}}",
        f"keyword='{key}={bare}'",
    ]


@settings(max_examples=150, deadline=None)
@given(key=_KEY, secret=_SECRET, quoted=_SECRET_QUOTED, before=_FILLER, after=_FILLER, shape=st.integers(0, 11))
def test_planted_secret_in_text_never_survives(key, secret, quoted, before, after, shape):
    planted = _shapes(key, secret, quoted)[shape]
    out = redact_text(f"{before} {planted} {after}")
    assert "Zq" not in out and "Qz" not in out, out


_JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet=string.ascii_letters, max_size=8))


def _nested(secret_key: str, secret: str):
    leaves = st.one_of(_JSON_LEAF, st.just({secret_key: secret}), st.just(f"{secret_key}={secret}"))
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6), children, max_size=4),
        ),
        max_leaves=20,
    )


@settings(max_examples=150, deadline=None)
@given(data=st.data(), key=_KEY)
def test_planted_secret_in_nested_structure_never_survives(data, key):
    value = data.draw(_nested(key, "ZqNESTEDQz"))
    assert "ZqNESTED" not in repr(redact(value))


def test_module_api():
    assert redaction.get_redactor(["A"]) is redaction.get_redactor(["a"])


# Bracketed form keys (PHP, Rails, jQuery's $.param): the last bracketed name decides, brackets may be encoded.
@pytest.mark.parametrize(
    "text",
    [
        "user[password]=ZqSECRETQz",
        "data[api_key]=ZqSECRETQz",
        "user%5Bpassword%5D=ZqSECRETQz",
        "user%5bpassword%5d=ZqSECRETQz",
        "user%5Bpassword%5D%3DZqSECRETQz",
        "/login?user[name]=bob&user[password]=ZqSECRETQz&next=/",
        "<WSGIRequest: POST '/login?user%5Bpassword%5D=ZqSECRETQz'>",
        "user[profile][password]=ZqSECRETQz",
        "user[password][]=ZqSECRETQz",
        "items[0][token]=ZqSECRETQz",
        "password[]=ZqSECRETQz",
        "user[Password]=ZqSECRETQz",
        "user[passwordConfirmation]=ZqSECRETQz",
        "user[password_confirmation]=ZqSECRETQz",
        "user[password]: ZqSECRETQz",
        "{'user[password]': 'ZqSECRETQz'}",
        '{"user[password]":"ZqSECRETQz"}',
    ],
)
def test_bracketed_form_keys_are_redacted(text):
    out = redact_text(text)
    assert "ZqSECRET" not in out, out
    assert REDACTED in out


def test_bracketed_form_keys_keep_the_rest():
    assert redact_text("user[name]=bob&user[password]=s3&page=2") == f"user[name]=bob&user[password]={REDACTED}&page=2"
    assert redact_text("user%5Bpassword%5D=s3&page=2") == f"user%5Bpassword%5D={REDACTED}&page=2"


@pytest.mark.parametrize(
    "text", ["user[name]=bob", "password[hint]=pet", "tokens_used[0]=3", "user[monkey]=5", "token[]", "a[b]c=1"]
)
def test_harmless_bracketed_keys_are_kept(text):
    assert redact_text(text) == text


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("user[password]", True),
        ("data[api_key]", True),
        ("user%5Bpassword%5D", True),
        ("user%5bapi_key%5d", True),
        ("user[profile][secret]", True),
        ("user[password][]", True),
        ("items[0][token]", True),
        ("key[0]", True),
        ("user[password", True),  # brackets that do not pair up: the words decide
        ("user[name]", False),
        ("password[hint]", False),
        ("tokens[]", False),
        ("user%5Bname%5D", False),
    ],
)
def test_bracketed_secret_key_names(key, secret):
    assert is_secret_key(key) is secret


def test_bracketed_keys_of_mappings_and_extra_keys():
    # request.POST of a Rails-style form, as a dict
    form = {"user[name]": "bob", "user[password]": "PW1", "user%5Bapi_key%5D": "KEY1", "page": "2"}
    assert redact(form) == {"user[name]": "bob", "user[password]": REDACTED, "user%5Bapi_key%5D": REDACTED, "page": "2"}
    assert redact_text("patient[ssn]=123-45", ["ssn"]) == f"patient[ssn]={REDACTED}"
    assert is_secret_key("patient[ssn]", ["ssn"]) and not is_secret_key("patient[ssn]")


_FORM_PREFIX = st.lists(st.sampled_from(["user", "data", "form", "items", "0", "profile", ""]), min_size=1, max_size=3)


def _form_key(prefix: list[str], key: str, index: str, encoded: bool) -> str:
    parts = [prefix[0] or "f", *prefix[1:], key]
    text = parts[0] + "".join(f"[{p}]" for p in parts[1:]) + index
    return text.replace("[", "%5B").replace("]", "%5D") if encoded else text


@settings(max_examples=150, deadline=None)
@given(
    prefix=_FORM_PREFIX,
    key=_KEY,
    index=st.sampled_from(["", "[]", "[0]", "[3][]"]),
    encoded=st.booleans(),
    before=_FILLER,
    secret=_SECRET,
)
def test_planted_secret_under_bracketed_form_key_never_survives(prefix, key, index, encoded, before, secret):
    bare = secret.replace(":", "").replace("@", "").replace("/", "").replace("%", "")
    bare = bare if len(bare) > 4 else "ZqbareQz"
    form_key = _form_key(prefix, key, index, encoded)
    for planted in (f"{form_key}={bare}", f"?a=1&{form_key}={bare}&b=2", f"{{'{form_key}': '{bare}'}}"):
        out = redact_text(f"{before} {planted}")
        assert "Zq" not in out and "Qz" not in out, out
    assert is_secret_key(form_key)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # request.POST as Django prints it: each value is a list.
        (
            "<QueryDict: {'user[password]': ['hunter2'], 'page': ['2']}>",
            f"<QueryDict: {{'user[password]': {REDACTED}, 'page': ['2']}}>",
        ),
        ("{'password': ('a', 'b'), 'n': 1}", f"{{'password': {REDACTED}, 'n': 1}}"),
        ('{"user": {"password": ["x", "y"]}}', f'{{"user": {{"password": {REDACTED}}}}}'),
        ("password: ['a]b', 'c'] tail", f"password: {REDACTED} tail"),
        # A harmless key that contains a fragment (key, token, ...) does not hide a pair in its value.
        ("keyword='password=hunter2'", f"keyword='password={REDACTED}'"),
        ("monkey='token=abc' x=1", f"monkey='token={REDACTED}' x=1"),
        ("keyword=[{'password': 'x'}] ok", f"keyword=[{{'password': '{REDACTED}'}}] ok"),
        ("keys: [1, 2] password=x", f"keys: [1, 2] password={REDACTED}"),
    ],
)
def test_list_values_and_pairs_inside_harmless_values(text, expected):
    assert redact_text(text) == expected
    assert redact_text(expected) == expected
