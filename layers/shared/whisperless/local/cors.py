"""CORS as API Gateway applies an HTTP API's CorsConfiguration, read from the translated template
(SAM writes it into the API's OpenAPI body as ``x-amazon-apigateway-cors``): the local stack's HTTP
front answers preflights and adds the headers exactly as the deployed API does, from the one
configuration in template.yaml."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


def _names(config: dict, key: str) -> tuple[str, ...]:
    value = config.get(key) or ()
    return (value,) if isinstance(value, str) else tuple(value)


@dataclass(frozen=True)
class Cors:
    allow_origins: tuple[str, ...]
    allow_methods: tuple[str, ...]
    allow_headers: tuple[str, ...]
    expose_headers: tuple[str, ...]
    max_age: int | None

    @classmethod
    def from_translated(cls, translated: dict) -> Cors | None:
        for resource in translated["Resources"].values():
            if resource["Type"] != "AWS::ApiGatewayV2::Api":
                continue
            config = resource["Properties"].get("Body", {}).get("x-amazon-apigateway-cors")
            if config:
                return cls(
                    _names(config, "allowOrigins"),
                    _names(config, "allowMethods"),
                    _names(config, "allowHeaders"),
                    _names(config, "exposeHeaders"),
                    config.get("maxAge"),
                )
        return None

    def _origin(self, headers: Mapping[str, str]) -> str | None:
        origin = {k.lower(): v for k, v in headers.items()}.get("origin")
        if not origin:
            return None
        if "*" in self.allow_origins:
            return "*"
        return origin if origin in self.allow_origins else None

    def preflight(self, headers: Mapping[str, str]) -> dict[str, str] | None:
        """The headers of API Gateway's answer to an OPTIONS preflight; None when it is not one
        this configuration allows (API Gateway then answers without CORS headers)."""
        lowered = {k.lower(): v for k, v in headers.items()}
        origin = self._origin(headers)
        method = lowered.get("access-control-request-method", "").upper()
        if origin is None or not method or ("*" not in self.allow_methods and method not in self.allow_methods):
            return None
        out = {
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": ",".join(self.allow_methods),
            "Access-Control-Allow-Headers": ",".join(self.allow_headers),
        }
        if self.max_age is not None:
            out["Access-Control-Max-Age"] = str(self.max_age)
        return out

    def response_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """What API Gateway adds to an answer for a request from an allowed origin."""
        origin = self._origin(headers)
        if origin is None:
            return {}
        out = {"Access-Control-Allow-Origin": origin}
        if self.expose_headers:
            out["Access-Control-Expose-Headers"] = ",".join(self.expose_headers)
        return out
