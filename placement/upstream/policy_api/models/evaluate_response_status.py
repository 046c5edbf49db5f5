from enum import StrEnum


class EvaluateResponseStatus(StrEnum):
    APPROVED = "APPROVED"
    MODIFIED = "MODIFIED"

    def __str__(self) -> str:
        return str(self.value)
