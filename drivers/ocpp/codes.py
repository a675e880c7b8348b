"""OCPP versions and RPC framework error codes, per version.

The two versions spell some codes differently on purpose (OCPP-J 1.6 errata 5.1 and 5.2 are
"known issues that will not be fixed"): 1.6 says ``FormationViolation`` and
``OccurenceConstraintViolation``, 2.0.1 says ``FormatViolation`` and
``OccurrenceConstraintViolation`` and adds ``MessageTypeNotSupported`` and ``RpcFrameworkError``.
Code above the drivers speaks in :class:`ErrorKind` and lets :func:`error_code` pick the spelling.
"""

from __future__ import annotations

from enum import Enum, StrEnum


class OcppVersion(StrEnum):
    V16 = "1.6"
    V201 = "2.0.1"

    @property
    def subprotocol(self) -> str:
        """The websocket subprotocol name registered with IANA for this version."""
        return "ocpp" + self.value

    @classmethod
    def from_subprotocol(cls, name: str) -> OcppVersion:
        for version in cls:
            if version.subprotocol == name:
                return version
        raise ValueError(f"no OCPP version for websocket subprotocol {name!r}")


SUBPROTOCOLS: tuple[str, ...] = tuple(v.subprotocol for v in OcppVersion)


class ErrorCode16(StrEnum):
    """OCPP-J 1.6 section 4.2.3, misspellings kept (errata 5.1, 5.2)."""

    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    INTERNAL_ERROR = "InternalError"
    PROTOCOL_ERROR = "ProtocolError"
    SECURITY_ERROR = "SecurityError"
    FORMATION_VIOLATION = "FormationViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    OCCURENCE_CONSTRAINT_VIOLATION = "OccurenceConstraintViolation"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"
    GENERIC_ERROR = "GenericError"


class ErrorCode201(StrEnum):
    """OCPP 2.0.1 Part 4 section 4.3, table 8."""

    FORMAT_VIOLATION = "FormatViolation"
    GENERIC_ERROR = "GenericError"
    INTERNAL_ERROR = "InternalError"
    MESSAGE_TYPE_NOT_SUPPORTED = "MessageTypeNotSupported"
    NOT_IMPLEMENTED = "NotImplemented"
    NOT_SUPPORTED = "NotSupported"
    OCCURRENCE_CONSTRAINT_VIOLATION = "OccurrenceConstraintViolation"
    PROPERTY_CONSTRAINT_VIOLATION = "PropertyConstraintViolation"
    PROTOCOL_ERROR = "ProtocolError"
    RPC_FRAMEWORK_ERROR = "RpcFrameworkError"
    SECURITY_ERROR = "SecurityError"
    TYPE_CONSTRAINT_VIOLATION = "TypeConstraintViolation"


class ErrorKind(Enum):
    """What went wrong, independent of how a version spells it."""

    FORMAT = "format"  # syntactically wrong, or not the structure of the action's PDU
    RPC_FRAMEWORK = "rpc_framework"  # not a valid RPC frame at all; the message id is unreadable
    MESSAGE_TYPE_NOT_SUPPORTED = "message_type_not_supported"
    NOT_IMPLEMENTED = "not_implemented"  # the action is not known
    NOT_SUPPORTED = "not_supported"  # the action is known but not supported here
    PROTOCOL = "protocol"
    OCCURRENCE = "occurrence"  # a required field missing, too few or too many items
    PROPERTY = "property"  # a value outside its enum or range
    TYPE = "type"  # a value of the wrong JSON type, or a string longer than its type allows
    SECURITY = "security"
    INTERNAL = "internal"
    GENERIC = "generic"


_CODES_16: dict[ErrorKind, ErrorCode16 | None] = {
    ErrorKind.FORMAT: ErrorCode16.FORMATION_VIOLATION,
    # 1.6 has no code for an unreadable frame; the payload could not be formed into a message.
    ErrorKind.RPC_FRAMEWORK: ErrorCode16.FORMATION_VIOLATION,
    # 1.6 section 4.1.3: a server SHALL ignore a message with an unknown type: no CALLERROR.
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: None,
    ErrorKind.NOT_IMPLEMENTED: ErrorCode16.NOT_IMPLEMENTED,
    ErrorKind.NOT_SUPPORTED: ErrorCode16.NOT_SUPPORTED,
    ErrorKind.PROTOCOL: ErrorCode16.PROTOCOL_ERROR,
    ErrorKind.OCCURRENCE: ErrorCode16.OCCURENCE_CONSTRAINT_VIOLATION,
    ErrorKind.PROPERTY: ErrorCode16.PROPERTY_CONSTRAINT_VIOLATION,
    ErrorKind.TYPE: ErrorCode16.TYPE_CONSTRAINT_VIOLATION,
    ErrorKind.SECURITY: ErrorCode16.SECURITY_ERROR,
    ErrorKind.INTERNAL: ErrorCode16.INTERNAL_ERROR,
    ErrorKind.GENERIC: ErrorCode16.GENERIC_ERROR,
}

_CODES_201: dict[ErrorKind, ErrorCode201 | None] = {
    ErrorKind.FORMAT: ErrorCode201.FORMAT_VIOLATION,
    ErrorKind.RPC_FRAMEWORK: ErrorCode201.RPC_FRAMEWORK_ERROR,
    ErrorKind.MESSAGE_TYPE_NOT_SUPPORTED: ErrorCode201.MESSAGE_TYPE_NOT_SUPPORTED,
    ErrorKind.NOT_IMPLEMENTED: ErrorCode201.NOT_IMPLEMENTED,
    ErrorKind.NOT_SUPPORTED: ErrorCode201.NOT_SUPPORTED,
    ErrorKind.PROTOCOL: ErrorCode201.PROTOCOL_ERROR,
    ErrorKind.OCCURRENCE: ErrorCode201.OCCURRENCE_CONSTRAINT_VIOLATION,
    ErrorKind.PROPERTY: ErrorCode201.PROPERTY_CONSTRAINT_VIOLATION,
    ErrorKind.TYPE: ErrorCode201.TYPE_CONSTRAINT_VIOLATION,
    ErrorKind.SECURITY: ErrorCode201.SECURITY_ERROR,
    ErrorKind.INTERNAL: ErrorCode201.INTERNAL_ERROR,
    ErrorKind.GENERIC: ErrorCode201.GENERIC_ERROR,
}


def error_code(kind: ErrorKind, version: OcppVersion) -> str | None:
    """The code to put in a CALLERROR, or None when this version wants no CALLERROR at all."""
    code = (_CODES_16 if version is OcppVersion.V16 else _CODES_201)[kind]
    return None if code is None else code.value


def error_codes(version: OcppVersion) -> frozenset[str]:
    """Every code a CALLERROR may carry in this version."""
    enum = ErrorCode16 if version is OcppVersion.V16 else ErrorCode201
    return frozenset(c.value for c in enum)
