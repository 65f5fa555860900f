"""Drivers run flows: they execute each effect a flow yields and send back its result."""
