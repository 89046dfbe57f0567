"""Real meters: MQTT devices (Shelly Gen2+, Tasmota) and the Linky TIC port, and their simulator."""
