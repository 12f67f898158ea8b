"""Hashing oracle: what Meta's official Python Business SDK (facebook-business, pinned in
tests/requirements.txt) puts in `user_data` for one value of one field.

Reads JSON lines `{"field": "em", "value": "  John@Example.COM "}` on stdin and writes one JSON
line per input, in order:

    {"value": "<what the SDK sends>" | null, "hashed": true|false,
     "plain": "<the SDK's normalised value before hashing>" | null, "error": "<why>" | null}

`value` is null when the SDK rejects the input (it raises, so the whole request build fails, or
the input cannot be expressed through its API) or drops it (empty). `hashed` is false where the
SDK sends the value without hashing it (`external_id`, and 32/64-hex input it takes as already
hashed). The value goes through the SDK's real code path, `UserData(...).normalize()`, not a
re-implementation; `plain` comes from `Normalize.normalize_field_skip_hashing`, the same rules
without the final SHA-256.

The first line written, before any input is read, is `{"ready": true, "sdk": "<version>"}` so a
caller knows the SDK imported.
"""

import json
import sys

from facebook_business.adobjects.serverside.gender import Gender
from facebook_business.adobjects.serverside.normalize import Normalize
from facebook_business.adobjects.serverside.user_data import UserData
from facebook_business.apiconfig import ads_api_config

# CAPI key -> UserData constructor argument.
KWARG = {
    "em": "email",
    "ph": "phone",
    "fn": "first_name",
    "ln": "last_name",
    "db": "date_of_birth",
    "ct": "city",
    "st": "state",
    "zp": "zip_code",
    "country": "country_code",
    "external_id": "external_id",
    "ge": "gender",
    "f5first": "f5first",
    "f5last": "f5last",
    "fi": "fi",
    "dobd": "dobd",
    "dobm": "dobm",
    "doby": "doby",
}


def oracle(field, value):
    if field not in KWARG:
        raise SystemExit("normalize.py: unknown field %r" % field)
    arg = value
    if field == "ge":
        # UserData only takes the Gender enum (a str raises TypeError): the only strings an SDK
        # user can send are the enum's values, 'f' and 'm', exactly.
        try:
            arg = Gender(value)
        except ValueError:
            return {"value": None, "hashed": False, "plain": None, "error": "not a Gender enum value"}
    try:
        sent = UserData(**{KWARG[field]: arg}).normalize().get(field)
    except (TypeError, ValueError) as e:
        return {"value": None, "hashed": False, "plain": None, "error": "%s: %s" % (type(e).__name__, e)}
    if isinstance(sent, list):
        assert len(sent) == 1, sent
        sent = sent[0]
    if sent is None:
        return {"value": None, "hashed": False, "plain": None, "error": "dropped (empty)"}
    if field == "external_id":
        return {"value": sent, "hashed": False, "plain": sent, "error": None}
    plain = Normalize.normalize_field_skip_hashing(field, arg.value if field == "ge" else value)
    return {"value": sent, "hashed": sent != plain, "plain": plain, "error": None}


def main():
    out = sys.stdout
    out.write(json.dumps({"ready": True, "sdk": ads_api_config["SDK_VERSION"]}) + "\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        q = json.loads(line)
        out.write(json.dumps(oracle(q["field"], q["value"]), ensure_ascii=False) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
