from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from attrs import define as _attrs_define
from attrs import field as _attrs_field

from ..models.evaluate_response_status import EvaluateResponseStatus

if TYPE_CHECKING:
    from ..models.service_instance import ServiceInstance


T = TypeVar("T", bound="EvaluateResponse")


@_attrs_define
class EvaluateResponse:
    """
    Attributes:
        evaluated_service_instance (ServiceInstance):
        selected_provider (str): Service provider selected by policies
        status (EvaluateResponseStatus): APPROVED - Request unchanged by policies
            MODIFIED - Request was modified by policies
    """

    evaluated_service_instance: ServiceInstance
    selected_provider: str
    status: EvaluateResponseStatus
    additional_properties: dict[str, Any] = _attrs_field(init=False, factory=dict)

    def to_dict(self) -> dict[str, Any]:
        evaluated_service_instance = self.evaluated_service_instance.to_dict()

        selected_provider = self.selected_provider

        status = self.status.value

        field_dict: dict[str, Any] = {}
        field_dict.update(self.additional_properties)
        field_dict.update(
            {
                "evaluated_service_instance": evaluated_service_instance,
                "selected_provider": selected_provider,
                "status": status,
            }
        )

        return field_dict

    @classmethod
    def from_dict(cls: type[T], src_dict: Mapping[str, Any]) -> T:
        from ..models.service_instance import ServiceInstance  # noqa: PLC0415

        d = dict(src_dict)
        evaluated_service_instance = ServiceInstance.from_dict(d.pop("evaluated_service_instance"))

        selected_provider = d.pop("selected_provider")

        status = EvaluateResponseStatus(d.pop("status"))

        evaluate_response = cls(
            evaluated_service_instance=evaluated_service_instance,
            selected_provider=selected_provider,
            status=status,
        )

        evaluate_response.additional_properties = d
        return evaluate_response

    @property
    def additional_keys(self) -> list[str]:
        return list(self.additional_properties.keys())

    def __getitem__(self, key: str) -> Any:
        return self.additional_properties[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.additional_properties[key] = value

    def __delitem__(self, key: str) -> None:
        del self.additional_properties[key]

    def __contains__(self, key: str) -> bool:
        return key in self.additional_properties
