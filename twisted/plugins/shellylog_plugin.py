from twisted.application.service import ServiceMaker

shellylog = ServiceMaker(
    "shellylog",
    "shellylog.tap",
    "Log the power of Shelly switch channels, minute by minute, to CSV.",
    "shellylog",
)
