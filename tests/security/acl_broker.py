"""A local Kafka broker with an authorizer: ACLs decide what each SASL/PLAIN user may do.

Listeners, all on 127.0.0.1:

    PLAINTEXT       the tests' own: readiness, topic creation, ACLs, reading results. Its
                    principal (``User:ANONYMOUS``) is a super user, as is the controller's
                    (the CONTROLLER listener is plaintext too): the broker's own traffic and the
                    test harness are never what an ACL test is about.
    SASL_PLAINTEXT  PLAIN users, each with the ACLs a test grants it and nothing else
                    (``allow.everyone.if.no.acl.found`` stays false).

The authorizer is KRaft's ``StandardAuthorizer``; ACLs are created with the admin API.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import (
    AclBinding,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from tests.fixtures.ports import free_port
from tests.security.broker import LocalBroker

SASL = "SASL_PLAINTEXT"
_ACL_TIMEOUT_S = 30.0


@dataclass
class AclBroker(LocalBroker):
    passwords: dict[str, str]
    """PLAIN user name -> password."""

    def render_properties(self) -> str:
        users = " ".join(f'user_{name}="{password}"' for name, password in self.passwords.items())
        sasl = f"{SASL}://127.0.0.1:{self.ports[SASL]}"
        lines = [
            f"listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,CONTROLLER://127.0.0.1:@KAFKA_CONTROLLER_PORT@,{sasl}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:@KAFKA_PORT@,{sasl}",
            f"listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,{SASL}:{SASL}",
            "sasl.enabled.mechanisms=PLAIN",
            f"listener.name.{SASL.lower()}.plain.sasl.jaas.config="
            f"org.apache.kafka.common.security.plain.PlainLoginModule required {users};",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users=User:ANONYMOUS",
            "allow.everyone.if.no.acl.found=false",
        ]
        return "\n".join(lines) + "\n"

    def grant(self, user: str, grants: Iterable[tuple[ResourceType, str, AclOperation]],
              pattern: ResourcePatternType = ResourcePatternType.LITERAL) -> None:
        """Allow ``user`` each (resource type, name, operation), from any host; waits until created."""
        bindings = [AclBinding(kind, name, pattern, f"User:{user}", "*", operation, AclPermissionType.ALLOW)
                    for kind, name, operation in grants]
        admin = AdminClient({"bootstrap.servers": self.bootstrap()})
        for future in admin.create_acls(bindings, request_timeout=_ACL_TIMEOUT_S).values():
            future.result(timeout=_ACL_TIMEOUT_S)


def new_acl_broker(home: Path, passwords: dict[str, str]) -> AclBroker:
    ports = {name: free_port() for name in ("PLAINTEXT", "CONTROLLER", SASL)}
    return AclBroker(home=home, ports=ports, passwords=passwords)
