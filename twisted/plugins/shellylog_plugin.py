from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.application.service import ServiceMaker

if TYPE_CHECKING:
    from twisted.application.service import IService

    from shellylog.tap import Options


class ShellylogServiceMaker(ServiceMaker):
    """
    twistd's entry: its options are L{shellylog.tap.Options}, and the service is built
    from the L{shellylog.config.Config} they hold. shellylog is imported only when used,
    as L{ServiceMaker} does, so that listing twistd's plugins stays quick.
    """

    def makeService(self, options: Options) -> IService:
        from shellylog.tap import makeService

        return makeService(options.config)


shellylog = ShellylogServiceMaker(
    "shellylog",
    "shellylog.tap",
    "Log the power of Shelly switch channels, minute by minute, to CSV.",
    "shellylog",
)
