"""The transports a round travels over: MQTT (grid, broker), Flower deployment, and the in-process grid."""
