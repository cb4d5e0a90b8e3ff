"""syncclass classroom agent: probes the classroom endpoint and reports over MQTT.

Kept light: nothing here imports the fleet's web or database stack.
"""

__version__ = "0.1.0"
