"""Every permission the service checks or audits, declared once (see policyhub.service.guard).

A permission is `repository.<Resource>.<verb>`; the audit trail records it as the method and
<Resource> as the resource type.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Permission:
    name: str
    # Refused to every caller but SYSTEM, whatever its assignments say.
    system_only: bool = False
    # Allowed to anonymous callers on the SpaceONE listener (the public catalogue).
    public_read: bool = False
    # Refused to every caller but SYSTEM and DOMAIN_ADMIN (those the escalation rule does not
    # apply to), whatever its assignments say: the call gives whatever its input holds.
    unrestricted_only: bool = False

    @property
    def resource_type(self) -> str:
        return self.name.split(".")[1]

    def __str__(self) -> str:
        return self.name


POLICY_CREATE = Permission("repository.Policy.create")
POLICY_UPDATE = Permission("repository.Policy.update")
POLICY_DELETE = Permission("repository.Policy.delete")
# Audited as one call; each id is authorized as POLICY_DELETE.
POLICY_DELETE_MANY = Permission("repository.Policy.delete_many")
POLICY_RESTORE = Permission("repository.Policy.restore")
POLICY_ENABLE = Permission("repository.Policy.enable")
POLICY_DISABLE = Permission("repository.Policy.disable")
POLICY_GET = Permission("repository.Policy.get", public_read=True)
POLICY_LIST = Permission("repository.Policy.list", public_read=True)
POLICY_STAT = Permission("repository.Policy.stat")
# Lifts the escalation rule on a policy; granted by name only (see policyhub.service.guard).
POLICY_ESCALATE = Permission("repository.Policy.escalate")

ASSIGNMENT_CREATE = Permission("repository.Assignment.create")
ASSIGNMENT_ADD = Permission("repository.Assignment.add")
ASSIGNMENT_REMOVE = Permission("repository.Assignment.remove")
ASSIGNMENT_DELETE = Permission("repository.Assignment.delete")
ASSIGNMENT_GET = Permission("repository.Assignment.get")
ASSIGNMENT_LIST = Permission("repository.Assignment.list")
ASSIGNMENT_STAT = Permission("repository.Assignment.stat")
# Needed to ask about others only: a caller's questions about itself need none
# (see policyhub.service.authorization_service).
ASSIGNMENT_CHECK = Permission("repository.Assignment.check")
ASSIGNMENT_BATCH_CHECK = Permission("repository.Assignment.batch_check")
ASSIGNMENT_LIST_AUTHORIZED_RESOURCES = Permission("repository.Assignment.list_authorized_resources")
ASSIGNMENT_LIST_SUBJECTS = Permission("repository.Assignment.list_subjects")
ASSIGNMENT_EFFECTIVE_PERMISSIONS = Permission("repository.Assignment.effective_permissions")
# Lifts the escalation rule on a grant; granted by name only.
ASSIGNMENT_BIND = Permission("repository.Assignment.bind")

GROUP_CREATE = Permission("repository.Group.create")
GROUP_UPDATE = Permission("repository.Group.update")
GROUP_DELETE = Permission("repository.Group.delete")
# Audited as one call; each id is authorized as GROUP_DELETE.
GROUP_DELETE_MANY = Permission("repository.Group.delete_many")
GROUP_GET = Permission("repository.Group.get")
GROUP_LIST = Permission("repository.Group.list")
GROUP_STAT = Permission("repository.Group.stat")
GROUP_ADD_USERS = Permission("repository.Group.add_users")
GROUP_REMOVE_USERS = Permission("repository.Group.remove_users")
GROUP_LIST_USERS = Permission("repository.Group.list_users")
GROUP_LIST_AUTHORIZED_RESOURCES = Permission("repository.Group.list_authorized_resources")

ROLE_CREATE = Permission("repository.Role.create")
ROLE_UPDATE = Permission("repository.Role.update")
ROLE_DELETE = Permission("repository.Role.delete")
ROLE_GET = Permission("repository.Role.get")
ROLE_LIST = Permission("repository.Role.list")
ROLE_STAT = Permission("repository.Role.stat")
ROLE_BIND_USERS = Permission("repository.Role.bind_users")
ROLE_UNBIND_USERS = Permission("repository.Role.unbind_users")
ROLE_LIST_USERS = Permission("repository.Role.list_users")

REPOSITORY_REGISTER = Permission("repository.Repository.register", system_only=True)
REPOSITORY_UPDATE = Permission("repository.Repository.update", system_only=True)
REPOSITORY_DEREGISTER = Permission("repository.Repository.deregister", system_only=True)
REPOSITORY_GET = Permission("repository.Repository.get", public_read=True)
REPOSITORY_LIST = Permission("repository.Repository.list", public_read=True)
REPOSITORY_STAT = Permission("repository.Repository.stat")

# The change log: kinds, ids and operations of the domain's writes (not their contents).
CHANGE_LIST = Permission("repository.Change.list")
CHANGE_WATCH = Permission("repository.Change.watch")
# A consistent snapshot of the domain (on the resource `domain`).
BULK_EXPORT_DOMAIN = Permission("repository.Bulk.export_domain")
# An import gives whatever its stream holds (policies, grants): callers the escalation rule
# applies to could give more than they hold, so only SYSTEM and DOMAIN_ADMIN may import.
BULK_IMPORT_DOMAIN = Permission("repository.Bulk.import_domain", unrestricted_only=True)

AUDIT_LIST = Permission("repository.Audit.list")
AUDIT_STAT = Permission("repository.Audit.stat")

API_KEY_CREATE = Permission("repository.ApiKey.create", system_only=True)
API_KEY_REVOKE = Permission("repository.ApiKey.revoke", system_only=True)
API_KEY_LIST = Permission("repository.ApiKey.list", system_only=True)

ALL = tuple(value for value in dict(globals()).values() if isinstance(value, Permission))
SYSTEM_ONLY = frozenset(permission.name for permission in ALL if permission.system_only)
