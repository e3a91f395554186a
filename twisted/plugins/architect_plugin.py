"""The twistd plugin: `twistd architect --config conf/router.ini`. Wiring lives in architect.tap."""

from twisted.application.service import ServiceMaker

architect = ServiceMaker(
    "Architect",
    "architect.tap",
    "Serve crowdsourcing tasks over the Mephisto Architect API (router and backend).",
    "architect",
)
