"""Behaviours of the account, image and evidence rules (policies/rules/accounts.py, images.py, evidence.py) that
mutation testing found no test pinned down: each test kills mutants that survived the pack's other tests (the
comment names the rule line and the mutants)."""

from __future__ import annotations

import base64
import datetime
import subprocess

import pytest

from tests.conftest import require_tool
from tests.policies.conftest import ids, messages, named
from tests.policies.fixtures import DIGEST, REDIS_USERS, container, registration, secret
from tests.policies.test_policies_rules import (
    add_env,
    both,
    drop_env,
    edit_service,
    edit_upload,
    set_fields,
)
from tests.policies.test_policies_waivers_unknowns import FUTURE, PAST, privileged_api

GUEST = "user guest on nopass ~cache:* -@all +get\n"


def _aclfile_users(text: str):
    """Both runtimes' Redis read their users from an aclfile holding `text`: the Docker redis gets it as an
    uploaded file its redis.conf names (Redis refuses `user` lines in redis.conf beside an aclfile), the Swarm
    cache as the secret its `--aclfile` names."""
    def mutate(rs):
        named(rs, "redis").inputs["uploads"] = [
            {"file": "/usr/local/etc/redis/redis.conf",
             "content": secret("aclfile /usr/local/etc/redis/users.acl\nprotected-mode yes\n")},
            {"file": "/usr/local/etc/redis/users.acl", "content": secret(text)},
        ]
        named(rs, "cache-acl").inputs["data"] = secret(base64.b64encode(text.encode()).decode())

    return mutate


def test_an_aclfile_user_is_judged_under_its_own_name(check):
    # accounts.py:62 _redis_users `line[1:]`, the aclfile line after `user` (1 -> 2: the name would be taken for
    # the first rule, `on` for the rules, and the user read as off).
    assert "DS-REDIS-003" not in ids(check(mutate=_aclfile_users(REDIS_USERS)))
    report = check(mutate=_aclfile_users(REDIS_USERS + GUEST))
    assert messages(report, "DS-REDIS-003") == [
        "redis: redis redis: aclfile /usr/local/etc/redis/users.acl: user guest logs in without a password (nopass)",
        "cache: redis cache: aclfile /run/secrets/acl: user guest logs in without a password (nopass)",
    ]


HASH = "#8d6e4d832dba00f1415ce7b30b47361899cb01a86349340ee2aa441403cc4272"


def test_a_user_line_with_a_name_alone_is_a_user(check):
    # accounts.py:55 _redis_users `len(fields) > 1` (1 -> 2): `user default` alone is a user directive (Redis resets
    # the default user to off, acl.c ACLLoadConfiguredUsers), so there is an ACL user and nobody shares one.
    report = check(mutate=edit_upload("redis", "redis.conf", REDIS_USERS, "user default\n"))
    assert messages(report, "DS-REDIS-003") == []


@pytest.mark.parametrize("where", ["redis.conf", "command line"])
def test_a_user_directive_without_a_name_is_passed_over(check, where):
    # accounts.py:55 _redis_users `len(fields) > 1` (1 -> 0: a bare `user`, which Redis refuses to start with,
    # would be taken for a user without a name, and the check would crash on it): the rest is still judged.
    guest = edit_upload("redis", "redis.conf", "user app reset on", "user guest on nopass ~cache:* -@all +get\nuser app reset on")
    bare = (edit_upload("redis", "redis.conf", "user default off", "user\nuser default off") if where == "redis.conf"
            else set_fields("redis", command=["redis-server", "/usr/local/etc/redis/redis.conf", "--user"]))
    report = check(mutate=both(guest, bare))
    assert messages(report, "DS-REDIS-003") == [
        "redis: redis redis: redis.conf: user guest logs in without a password (nopass)"]


def test_a_directive_sorting_before_aclfile_names_no_aclfile(check):
    # accounts.py:57 _redis_users `name == "aclfile"` (== -> <=: `acl-pubsub-default resetchannels`, a Redis 6.2+
    # directive, would be read as an aclfile named `resetchannels`).
    report = check(mutate=edit_upload("redis", "redis.conf", "protected-mode yes",
                                      "protected-mode yes\nacl-pubsub-default resetchannels"))
    assert "DS-REDIS-003" not in ids(report), messages(report, "DS-REDIS-003")


def test_the_default_user_switched_on_is_reported(check):
    # accounts.py:153 redis_account_per_client `name == "default"` (== -> is: the name is a token shlex built).
    report = check(mutate=edit_upload("redis", "redis.conf", "user default off", f"user default on {HASH}"))
    assert messages(report, "DS-REDIS-003") == [(
        "redis: redis redis: redis.conf: the default user is on: every connection that does not log in, or logs in "
        "with its one password, is it")]


@pytest.mark.parametrize(("rules", "nopass"), [
    # accounts.py:70 _redis_nopass `nopass = False` (False -> True): a user without any password is no nopass user
    # (nobody can log in as it).
    ("on ~cache:* -@all +get", False),
    # accounts.py:74 `rule[:1] in (">", "#")` (1 -> 0): a password or hash after `nopass` turns it off.
    ("on nopass >Zq8vN3kP0wLx7TbR ~cache:* -@all +get", False),
    (f"on nopass {HASH} ~cache:* -@all +get", False),
    # ... and `nopass` after the password is the last word.
    ("on >Zq8vN3kP0wLx7TbR nopass ~cache:* -@all +get", True),
])
def test_nopass_is_the_users_last_word_on_passwords(check, rules, nopass):
    report = check(mutate=edit_upload("redis", "redis.conf", "user app reset on", f"user guest {rules}\nuser app reset on"))
    expected = ["redis: redis redis: redis.conf: user guest logs in without a password (nopass)"] if nopass else []
    assert messages(report, "DS-REDIS-003") == expected


def test_a_key_pattern_named_like_a_dangerous_command_takes_no_grant_back(check):
    # accounts.py:93 _redis_grants `rule[:1] in "+-"` (1 -> 0: "" is in every string, so `~keys`, a key pattern,
    # would be read as `-keys`).
    report = check(mutate=edit_upload("redis", "redis.conf", "-@dangerous +info", "-@dangerous +info +keys ~keys"))
    assert messages(report, "DS-REDIS-003") == ["redis: redis redis: redis.conf: user app may run keys"]


@pytest.mark.parametrize(("rules", "expected"), [
    # accounts.py:91 _redis_grants `rule == "-@admin"` (== -> >: a key pattern, `on` or a `>password` sorts after
    # "-@admin" and would take @admin back) ...
    ("-@dangerous +info +@admin ~audit:*", ["redis: redis redis: redis.conf: user app may run @admin"]),
    # ... and :92, `-@admin` takes it back.
    ("-@dangerous +info +@admin -@admin", []),
])
def test_an_admin_grant_stays_until_minus_admin_takes_it_back(check, rules, expected):
    report = check(mutate=edit_upload("redis", "redis.conf", "-@dangerous +info", rules))
    assert messages(report, "DS-REDIS-003") == expected


def _exporter_and_gateway(exporter_user: str, gateway_user: str):
    exporter = container("redis-exporter", "mon", f"oliver006/redis_exporter:v1.62.0{DIGEST}", "data",
                         command=["redis_exporter", "--redis.addr=redis://redis:6379", f"--redis.user={exporter_user}"])
    return both(lambda rs: rs.append(exporter),
                add_env("api-gateway", "SPRING_DATA_REDIS_HOST=redis", f"SPRING_DATA_REDIS_USERNAME={gateway_user}"))


def test_the_exporters_redis_user_flag_is_read_whole(check):
    # accounts.py:109 _redis_client_users `part.split("=", 1)[1]` (1 -> 2: a user name holding `=` would be cut)
    # and :110 `flags[-1]`, the last (here only) flag (-1 -> +1).
    shared = check(mutate=_exporter_and_gateway("app=1", "app=1"))
    assert messages(shared, "DS-REDIS-003") == [
        "fixture-test: redis user app=1 is shared by api-gateway, redis-exporter: one user per client"]
    assert "DS-REDIS-003" not in ids(check(mutate=_exporter_and_gateway("app=1", "app")))


SERVER_PROPERTIES_FORMS = [
    # accounts.py _kafka_settings' loop over the uploaded files (ZeroIterationForLoop): a server.properties
    # setting is read ...
    ("super.users=User:ANONYMOUS\n", True),
    # ... a commented one is not.
    ("# super.users=User:ANONYMOUS\nsuper.users=User:kafka-broker\n", False),
    ("! super.users=User:ANONYMOUS\nsuper.users=User:kafka-broker\n", False),
    # Java's properties syntax, which Kafka reads: `:` or whitespace separates, a backslash continues the line.
    ("super.users:User:ANONYMOUS\n", True),
    ("super.users User:ANONYMOUS\n", True),
    ("super.users=User:kafka-broker;\\\n    User:ANONYMOUS\n", True),
]


@pytest.mark.parametrize(("properties", "anonymous"), SERVER_PROPERTIES_FORMS)
def test_an_uploaded_server_properties_configures_kafka(check, properties, anonymous):
    report = check(mutate=set_fields("kafka", uploads=[
        {"file": "/mnt/shared/config/server.properties", "content": properties}]))
    finding = "kafka: kafka kafka: super.users holds User:ANONYMOUS: every connection without a login is all-powerful"
    expected = [finding] if anonymous else []
    assert messages(report, "DS-KAFKA-002") == expected


BACKUP_AS_DEFAULT = ["fixture-test: clickhouse client clickhouse-backup: logs in as default, not a user of its own"]


@pytest.mark.parametrize(("env_user", "section", "expected"), [
    # accounts.py:346 _clickhouse_client_users `config.get("clickhouse") if isinstance(config, dict)` (AddNot) and
    # :340, the loop over its files (ZeroIterationForLoop): the user clickhouse-backup's config file names is the
    # one it logs in as ...
    (None, "clickhouse:\n  username: clickhouse-backup\n", []),
    # ... and without one there, its own default, `default`; as when the file is no YAML or the section no mapping.
    (None, "clickhouse:\n", BACKUP_AS_DEFAULT),
    (None, "clickhouse: [clickhouse-backup\n", BACKUP_AS_DEFAULT),
    (None, "clickhouse: [clickhouse-backup]\nprevious:\n", BACKUP_AS_DEFAULT),
    # CLICKHOUSE_USERNAME overrides the file.
    ("clickhouse-backup", "clickhouse:\n  username: default\n", []),
])
def test_clickhouse_backup_logs_in_as_the_user_its_config_file_names(check, env_user, section, expected):
    report = check(mutate=both(
        drop_env("clickhouse-backup", "CLICKHOUSE_USERNAME="),
        add_env("clickhouse-backup", *([f"CLICKHOUSE_USERNAME={env_user}"] if env_user else [])),
        edit_upload("clickhouse-backup", "chb.yml", "clickhouse:\n", section),
    ))
    assert messages(report, "DS-CH-002") == expected


def test_a_yaml_file_that_does_not_parse_is_passed_over_for_the_next(check):
    # accounts.py:345 _clickhouse_client_users' `continue` past a file YAML cannot read (continue -> break: the
    # config file after it would go unread, and the user taken for `default`).
    def mutate(rs):
        named(rs, "clickhouse-backup").inputs["uploads"].insert(
            0, {"file": "/etc/platform/notes.yml", "content": "clickhouse: [unclosed\n  username: x\n"})

    report = check(mutate=both(
        drop_env("clickhouse-backup", "CLICKHOUSE_USERNAME="), mutate,
        edit_upload("clickhouse-backup", "chb.yml", "clickhouse:\n", "clickhouse:\n  username: clickhouse-backup\n"),
    ))
    assert messages(report, "DS-CH-002") == []


def test_the_images_default_user_stays_unless_a_file_configures_it(check):
    # accounts.py:311 _clickhouse_user_elements `any(name == "default" ...)` (== -> is not: another user in the file
    # would be taken for the default's; AddNot on `"default" not in removed`): a users.d file without `default`
    # leaves the image's users.xml one.
    report = check(mutate=edit_upload("clickhouse", "users.xml", (
        '<default><networks replace="replace"><ip>::1</ip><ip>127.0.0.1</ip></networks></default>'), ""))
    assert messages(report, "DS-CH-002") == [
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default accepts any address",
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default has no password",
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default has every right (no <grants>)",
    ]


def test_a_users_file_that_is_no_xml_is_reported(check):
    # accounts.py:291 _clickhouse_user_elements `except ET.ParseError` (ExceptionReplacer: the check would crash).
    report = check(mutate=edit_upload("clickhouse", "users.xml", "</users></clickhouse>", "</users>"))
    # The file's users unread, the image's own `default` is what the server is taken to have.
    assert messages(report, "DS-CH-002") == [
        ("clickhouse: clickhouse clickhouse: /etc/clickhouse-server/users.d/users.xml is not XML (no element found: "
         "line 9, column 0): its users cannot be checked"),
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default accepts any address",
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default has no password",
        "clickhouse: clickhouse clickhouse: the image's users.xml: user default has every right (no <grants>)",
    ]


def test_a_default_user_a_users_file_removes_is_gone(check):
    # accounts.py:296-297 _clickhouse_user_elements: `<default remove="remove"/>` drops the image's default user.
    report = check(mutate=edit_upload("clickhouse", "users.xml", (
        '<default><networks replace="replace"><ip>::1</ip><ip>127.0.0.1</ip></networks></default>'),
        '<default remove="remove"/>'))
    assert messages(report, "DS-CH-002") == []


def test_a_kafka_client_without_a_sasl_user_is_reported(check):
    # accounts.py:262-263 kafka_account_per_client: a client naming no SASL user.
    report = check(mutate=add_env("api-gateway", "SPRING_KAFKA_BOOTSTRAP_SERVERS=kafka:9092"))
    assert messages(report, "DS-KAFKA-002") == ["fixture-test: kafka client api-gateway: no SASL user"]


def test_an_untagged_image_is_named_by_the_field_of_its_resource(check):
    # images.py:35 _image_names `resource.type == SERVICE` (== -> <=: a Container's type sorts before a Service's)
    # and :37 `resource.resource_type == IMAGE` (== -> is: the type arrives as a string off the wire).
    untagged = "registry.internal/orchestration/api-gateway"
    report = check(mutate=both(
        set_fields("api-gateway", image=untagged),
        edit_service("orders", "taskSpec", "containerSpec", "image", value=untagged),
        set_fields("app-image", name=untagged),
        lambda rs: rs.append(registration("docker:index/image:Image", "app-build", {
            "imageName": untagged, "build": {"context": "services/api-gateway"}})),
    ))
    assert sorted(messages(report, "IMG-001")) == [
        f"api-gateway: image {untagged} has no tag",
        f"app-build: imageName {untagged} has no tag",
        f"app-image: name {untagged} has no tag",
        f"orders: containerSpec.image {untagged} has no tag",
    ]


def test_an_expired_waiver_fails_the_evidence_gate(check):
    # evidence.py:79 evidence_gate's loop over the expired waivers and :49 _waivers' loop over the labels
    # (ZeroIterationForLoop): without an evidence store to read, the expired waiver alone is the gate's finding.
    report = check(mutate=privileged_api(f"reason=temporary;expires={PAST}"))
    assert messages(report, "EVD-001") == [f"fixture-test: waiver CTR-001 on api-gateway expired on {PAST}"]
    assert "EVD-001" not in ids(check(mutate=privileged_api(f"reason=temporary;expires={FUTURE}")))


def test_a_waiver_expiring_within_14_days_is_listed(check):
    # evidence.py:104 waivers_expiring's loop over the expiring waivers (ZeroIterationForLoop).
    soon = (datetime.date.today() + datetime.timedelta(days=7)).isoformat()
    report = check(mutate=privileged_api(f"reason=temporary;expires={soon}"))
    assert messages(report, "EVD-002") == [f"fixture-test: waiver CTR-001 on api-gateway expires on {soon}"]
    assert "EVD-002" not in ids(check(mutate=privileged_api(f"reason=temporary;expires={FUTURE}")))


# What Kafka reads: java.util.Properties.load (Kafka's Utils.loadProps), run in a JVM for each form above.
PROPERTIES_READER = """import java.util.Properties; import java.io.StringReader; import java.nio.file.*;
public class Read { public static void main(String[] files) throws Exception {
  for (String file : files) { Properties p = new Properties(); p.load(new StringReader(Files.readString(Path.of(file))));
    System.out.println(p.getProperty("super.users")); } } }
"""


def test_kafka_reads_each_server_properties_form_as_the_rule_does(tmp_path):
    """The forms the rule is tested with mean to Java what the rule takes them to mean: the anonymous super user
    is in super.users exactly where the rule reports it."""
    java = require_tool("java", "default-jdk-headless")
    forms = SERVER_PROPERTIES_FORMS
    (tmp_path / "Read.java").write_text(PROPERTIES_READER)
    files = []
    for index, (properties, _) in enumerate(forms):
        files.append(tmp_path / f"{index}.properties")
        files[-1].write_text(properties)
    done = subprocess.run([java, str(tmp_path / "Read.java"), *map(str, files)], capture_output=True, text=True,
                          timeout=120, check=True)
    read_by_java = done.stdout.splitlines()
    assert ["User:ANONYMOUS" in users for users in read_by_java] == [anonymous for _, anonymous in forms]
