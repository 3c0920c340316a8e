"""librdkafka settings: ours, then whatever ``SHOPSTREAM_KAFKA_*`` variables say.

``SHOPSTREAM_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` becomes ``security.protocol=SASL_SSL``: the
rest of the name, lowercased, with ``_`` read as ``.``. That is how SASL, TLS and any other
client setting reach a managed cluster without ShopStream knowing about each of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

ENV_PREFIX: Final = "SHOPSTREAM_KAFKA_"


def env_overrides(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {
        name.removeprefix(ENV_PREFIX).lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX)
    }


ClientConfig = dict[str, str | int | float | bool]


def client_config(
    bootstrap: str,
    defaults: Mapping[str, str | int | float | bool] | None = None,
    environ: Mapping[str, str] | None = None,
) -> ClientConfig:
    config: ClientConfig = {"bootstrap.servers": bootstrap}
    config.update(defaults or {})
    config.update(env_overrides(environ))
    return config
