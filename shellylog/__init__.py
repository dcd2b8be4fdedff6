"""shellylog: a minute-by-minute CSV log of Shelly switch channel power."""
