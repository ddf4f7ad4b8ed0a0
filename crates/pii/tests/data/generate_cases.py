"""Generates labelled test sentences for the pii scanner (Presidio-research format: full_text and
spans with entity_type, start_position, end_position in code points).

    python3 -m pip install faker
    python3 generate_cases.py 1 > generated_dev.json
    python3 generate_cases.py 2 > generated_holdout.json

The dev file is for tuning; the holdout file (another seed, and templates the dev file never uses)
measures generalisation and is not tuned against.
"""

import base64
import json
import random
import string
import sys

from faker import Faker

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
holdout = seed != 1
rng = random.Random(seed)
Faker.seed(seed)
LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "en_AU", "en_IN",
           "pl_PL", "sv_SE", "da_DK", "en_CA", "cs_CZ", "fr_CH", "de_AT", "pt_PT", "fi_FI", "no_NO"]
fakers = {loc: Faker(loc) for loc in LOCALES}
us = fakers["en_US"]


def any_faker():
    return fakers[rng.choice(LOCALES)]


def alnum(n, alphabet=string.ascii_letters + string.digits):
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(obj):
    raw = json.dumps(obj, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def group(s, size=4, sep=" "):
    return sep.join(s[i:i + size] for i in range(0, len(s), size))


def card():
    kind = rng.choice(["visa16", "mastercard", "amex", "discover", "jcb", "diners", "visa13"])
    number = us.credit_card_number(card_type=kind)
    style = rng.random()
    if style < 0.4:
        return number
    sep = rng.choice([" ", "-"])
    if len(number) == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    if len(number) == 14:
        return sep.join([number[:4], number[4:10], number[10:]])
    if len(number) == 13:
        return sep.join([number[:4], number[4:8], number[8:]])
    return group(number, 4, sep)


def ssn():
    value = us.ssn()
    return value if rng.random() < 0.8 else value.replace("-", rng.choice([" ", "."]))


def phone():
    f = any_faker()
    return f.phone_number() if rng.random() < 0.7 else f.msisdn() if rng.random() < 0.2 else "+" + f.country_calling_code().lstrip("+") + " " + f.msisdn()[3:]


def iban():
    f = fakers[rng.choice(["de_DE", "fr_FR", "en_GB", "nl_NL", "es_ES", "it_IT", "pl_PL", "fi_FI", "no_NO", "pt_PT", "de_AT", "fr_CH", "da_DK", "sv_SE", "cs_CZ"])]
    value = f.iban()
    return value if rng.random() < 0.5 else group(value)


def ip():
    r = rng.random()
    if r < 0.5:
        return us.ipv4_public()
    if r < 0.7:
        return us.ipv4_private()
    return us.ipv6()


def email():
    return any_faker().email() if rng.random() < 0.5 else us.free_email() if rng.random() < 0.5 else us.company_email()


def jwt():
    header = {"alg": rng.choice(["HS256", "RS256", "EdDSA"]), "typ": "JWT"}
    payload = {"sub": str(rng.randint(1, 10**9)), "name": us.name(), "iat": rng.randint(1.5e9, 1.8e9)}
    sig = base64.urlsafe_b64encode(bytes(rng.randrange(256) for _ in range(32))).decode().rstrip("=")
    return f"{b64url(header)}.{b64url(payload)}.{sig}"


def private_key():
    label = rng.choice(["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])
    body = base64.b64encode(bytes(rng.randrange(256) for _ in range(rng.choice([96, 144, 192])))).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----"


def provider_key():
    return rng.choice([
        lambda: "sk_live_" + alnum(24),
        lambda: "rk_live_" + alnum(24),
        lambda: "ghp_" + alnum(36),
        lambda: "github_pat_" + alnum(22) + "_" + alnum(59),
        lambda: "AKIA" + alnum(16, string.ascii_uppercase + string.digits),
        lambda: "xoxb-" + alnum(11, string.digits) + "-" + alnum(12, string.digits) + "-" + alnum(24),
        lambda: "AIza" + alnum(35, string.ascii_letters + string.digits + "_-"),
        lambda: "glpat-" + alnum(20, string.ascii_letters + string.digits + "_-"),
        lambda: "sk-proj-" + alnum(48, string.ascii_letters + string.digits + "_-"),
        lambda: "SG." + alnum(22, string.ascii_letters + string.digits + "_-") + "." + alnum(43, string.ascii_letters + string.digits + "_-"),
        lambda: "npm_" + alnum(36),
    ])()


def random_secret():
    return alnum(rng.choice([24, 32, 40]), string.ascii_letters + string.digits + "+/")


def password():
    return rng.choice([us.password(length=rng.randint(10, 16)), alnum(8) + "!" + str(rng.randint(10, 99))])


# (entity, value factory, templates). "{}" marks the value. Dev templates first; the holdout file
# uses only the templates after the "|" marker of each list.
CASES = [
    ("EMAIL_ADDRESS", email, ["Please write to {} for details.", "From: {}", "contact {}, thanks", "{\"email\": \"{}\"}",
                              "user={} action=login", "Send it to <{}> today",
                              "|", "cc: {}; bcc: nobody", "Reach our team at {} or by post.", "Mail {}!", "[{}]"]),
    ("CREDIT_CARD", card, ["My card number is {}.", "Charge {} please", "card={} exp=12/27", "Paid with {} yesterday",
                           "{\"pan\": \"{}\"}", "CC: {}",
                           "|", "Visa {} was declined", "use the card {}, not the old one", "number {} expires soon"]),
    ("US_SSN", ssn, ["My SSN is {}.", "ssn: {}", "Social security number {} on file", "{\"ssn\": \"{}\"}",
                     "|", "SSN {} verified", "Employee {} needs a new badge (SSN)"]),
    ("PHONE_NUMBER", phone, ["Call me at {} tomorrow.", "Phone: {}", "You can reach me on {}", "{} (mobile)",
                             "tel={} status=ok", "{\"phone\": \"{}\"}", "Fax: {}",
                             "|", "My number is {}, call after 5", "Ring {} for support", "contact: {}", "WhatsApp {} anytime"]),
    ("IBAN_CODE", iban, ["IBAN: {}", "Please transfer to {} by Friday.", "account {} (savings)", "{\"iban\": \"{}\"}",
                         "|", "Wire the funds to {}", "Bank account {} is closed"]),
    ("IP_ADDRESS", ip, ["Connection from {} refused", "client_ip={} method=GET", "Server {} is down", "{\"ip\": \"{}\"}",
                        "|", "Ping {} to test", "login from {} at night"]),
    ("SECRET", jwt, ["token={}", "Authorization: Bearer {}", "session {} expired", "{\"id_token\": \"{}\"}",
                     "|", "jwt: {}", "here is my token {} ok"]),
    ("SECRET", private_key, ["key:\n{}\n", "{}", "Deploy key below\n{}\nthanks",
                             "|", "id_rsa contents:\n{}"]),
    ("SECRET", provider_key, ["STRIPE_KEY={}", "use {} for the API", "export TOKEN={}", "{\"key\": \"{}\"}",
                              "|", "leaked key {} in the repo", "curl -u {}: https://api.example.com"]),
    ("SECRET", random_secret, ["api_key={}", "client_secret: {}", "AWS_SECRET_ACCESS_KEY={}", "{\"access_token\": \"{}\"}",
                               "|", "secret_key = {}", "X-Api-Key: {}"]),
    ("SECRET", password, ["password={}", "Password: {}", "{\"password\": \"{}\"}", "db_pass={}",
                          "|", "pwd: {}", "passwd={}"]),
]

NEGATIVES = [
    "Version 2.4.1 was released on 2023-05-01 at 10:30.",
    "The meeting is at 14:45 in room 204, floor 3.",
    "Order #45821 shipped; total $1,249.99 (incl. 20% VAT).",
    "We grew from 1 200 000 to 3 400 000 users between 2019 and 2021.",
    "Build 1.22.3.4567 passed 1532 tests in 48.2 s.",
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 fixed it",
    "request_id=550e8400-e29b-41d4-a716-446655440000 status=200 duration_ms=12",
    "Population: 8 336 817 (2020 census); area 783.8 km2.",
    "Reference 2021-10-15/0042 filed under case 17/2021.",
    "The temperature dropped to -12.5 degrees on 12/27/1986.",
    "Use std::vector and std::map in C++ for this exercise.",
    "password: incorrect, try again",
    "token_count: 1532, max_tokens=2048",
    "See RFC 4291 section 2.2 and ISO 13616-1:2020.",
    "Zip 94105, PO Box 1234, suite 500.",
    "The ratio was 3:2 and the score 21:17 at half time.",
    "Room 12-34-56 is next to lab 7.",
    "ISBN 978-3-16-148410-0 is on page 42.",
    "It costs 12 345,67 EUR or 13 999 USD.",
    "Coordinates 48.8566, 2.3522 mark Paris.",
]


def record(entity, value, template):
    before, after = template.split("{}", 1)
    text = before + value + after
    return {"full_text": text, "spans": [{"entity_type": entity, "entity_value": value,
                                          "start_position": len(before), "end_position": len(before) + len(value)}]}


def templates_for(templates):
    cut = templates.index("|")
    return templates[cut + 1:] if holdout else templates[:cut]


records = []
for entity, factory, templates in CASES:
    for template in templates_for(templates):
        for _ in range(6 if entity != "SECRET" else 3):
            records.append(record(entity, factory(), template))
# Two findings in one text.
for _ in range(20):
    (e1, f1, t1), (e2, f2, t2) = rng.sample(CASES, 2)
    a, b = record(e1, f1(), rng.choice(templates_for(t1))), record(e2, f2(), rng.choice(templates_for(t2)))
    shift = len(a["full_text"]) + 1
    for s in b["spans"]:
        s["start_position"] += shift
        s["end_position"] += shift
    records.append({"full_text": a["full_text"] + " " + b["full_text"], "spans": a["spans"] + b["spans"]})
negatives = NEGATIVES if not holdout else [us.sentence() + " " + str(rng.randint(1, 99999)) + " " + us.date() for _ in range(20)]
records.extend({"full_text": t, "spans": []} for t in negatives)
json.dump(records, sys.stdout, ensure_ascii=False, indent=1)
sys.stdout.write("\n")
