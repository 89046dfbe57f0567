"""MQTT devices: one client per broker, feeding every sensor whose fleet entry names it.

paho-mqtt runs the network loop in its own thread and reconnects by itself,
with a backoff from 1 s doubling to 60 s; here a lost broker is logged once
when it goes and once when it is back, and nothing else stops: the other
sources keep serving, and the MQTT sensors simply go stale until the broker
returns.  Subscriptions are QoS 1 and renewed on every (re)connect, since a
clean session loses them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as paho

from devices import shelly, tasmota
from devices.reading import Reading, Rejected
from devices.state import DeviceState
from homewatt.fleet import Sensor

log = logging.getLogger(__name__)

Parse = Callable[[str, bytes], Reading | None]


def parser(sensor: Sensor) -> tuple[list[str], Parse]:
    """The topics to subscribe to for a device sensor, and how to read what arrives on them."""
    device = sensor.device
    assert device is not None and device.topic is not None
    if device.format == "shelly":
        return shelly.topics(device.topic), shelly.ShellyDevice(device.topic, device.component).handle
    tz = sensor.timezone
    return tasmota.topics(device.topic), lambda topic, payload: tasmota.parse(topic, payload, tz)


def broker_address(broker: str) -> tuple[str, int]:
    """(host, port) of `mqtt://[user:password@]host[:port]`, MQTT's defaults filled in."""
    url = urlsplit(broker)
    return url.hostname or "127.0.0.1", url.port or 1883


def source_label(broker: str) -> str:
    """The `source` label of a broker's devices: its address without the credentials."""
    host, port = broker_address(broker)
    return f"mqtt://{host}:{port}"


def client(broker: str, client_id: str) -> paho.Client:
    """A paho client for `mqtt://[user:password@]host:port`, reconnecting with backoff up to 60 s."""
    url = urlsplit(broker)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
    if url.username:
        c.username_pw_set(unquote(url.username), unquote(url.password or ""))
    c.reconnect_delay_set(min_delay=1, max_delay=60)
    # connect_async: a broker that is down at start is retried by the loop, like one that goes away.
    c.connect_async(*broker_address(broker), keepalive=30)
    return c


class MqttSource:
    """The device sensors of one broker."""

    def __init__(
        self, broker: str, sensors: list[tuple[Sensor, DeviceState]], client_id: str = "homewatt-exporter"
    ):
        self.broker = broker
        self.host, self.port = broker_address(broker)
        self.client = client(broker, client_id)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.subscriptions: list[str] = []
        for sensor, state in sensors:
            topics, parse = parser(sensor)
            for topic in topics:
                self.subscriptions.append(topic)
                self.client.message_callback_add(topic, self._handler(parse, state))
        self._down = False
        self.up = False  # connected and subscribed: homewatt_device_source_up

    @property
    def name(self) -> str:
        return source_label(self.broker)

    @staticmethod
    def _handler(parse: Parse, state: DeviceState) -> Callable[[paho.Client, object, paho.MQTTMessage], None]:
        def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
            try:
                reading = parse(msg.topic, msg.payload)
            except Rejected as exc:
                state.reject(exc)
                return
            except Exception:  # a parser bug must not kill the network thread
                log.exception("%s: cannot read %s", state.sensor_id, msg.topic)
                return
            if reading is not None:
                state.offer(reading)

        return on_message

    def _on_connect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._lost(f"refused: {reason}")
            return
        client.subscribe([(topic, 1) for topic in self.subscriptions])
        if self._down:
            log.info("MQTT broker %s:%d is back; subscribed again", self.host, self.port)
        else:
            log.info(
                "MQTT broker %s:%d: subscribed to %s", self.host, self.port, ", ".join(self.subscriptions)
            )
        self._down = False
        self.up = True

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self._lost(str(reason))

    def _lost(self, why: str) -> None:
        self.up = False
        if not self._down:
            log.warning(
                "MQTT broker %s:%d lost (%s); reconnecting with backoff up to 60 s", self.host, self.port, why
            )
        self._down = True

    def start(self) -> None:
        self.client.loop_start()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
