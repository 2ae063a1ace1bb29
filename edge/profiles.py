"""Device profiles: the memory, clock and power limits of real boards.

Memory and clock figures are the boards' datasheet values. ``reserved_*`` is
what the firmware, RTOS and bootloader already occupy, so that the usable
figures of the Nano 33 BLE Sense (172 KB RAM / 628 KB flash) match those
reported by the SeLoC-ML knowledge graph. Currents are datasheet typicals
for the SoC (CPU active at full clock, radio transmitting / receiving). The
cycles-per-MAC figures of the Cortex-M4F (Nano 33 BLE Sense) are measured: the
instructions our firmware executes under QEMU mps2-an386 with -icount shift=0
per MAC as ``compute_cost`` counts them (``python bench/firmware.py``, its
``time_model``), taking cycles = instructions, which is an assumption (an
in-order M4 retires about one instruction per cycle, but loads, branches and
flash wait states cost more, so real cycles are somewhat higher). The other
boards' figures are still rough, kernel-dependent estimates (software float on
Cortex-M0+); they make simulated time and energy comparable between methods,
not exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KB = 1024
MB = 1024 * KB


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    board: str
    mcu: str
    architecture: str
    clock_hz: int
    ram_bytes: int
    flash_bytes: int
    reserved_ram_bytes: int
    reserved_flash_bytes: int
    has_fpu: bool
    supply_voltage_v: float
    active_current_a: float
    radio: str
    radio_bitrate_bps: int  # effective application throughput, not the PHY rate
    radio_tx_current_a: float
    radio_rx_current_a: float
    cycles_per_float_mac: float
    cycles_per_int8_mac: float
    sensors: tuple[str, ...]
    runtime: str

    @property
    def usable_ram_bytes(self) -> int:
        return self.ram_bytes - self.reserved_ram_bytes

    @property
    def usable_flash_bytes(self) -> int:
        return self.flash_bytes - self.reserved_flash_bytes

    def compute_seconds(self, float_macs: float = 0.0, int8_macs: float = 0.0) -> float:
        cycles = float_macs * self.cycles_per_float_mac + int8_macs * self.cycles_per_int8_mac
        return cycles / self.clock_hz

    def radio_seconds(self, n_bytes: int) -> float:
        return 8.0 * n_bytes / self.radio_bitrate_bps

    def energy_joules(self, compute_s: float, bytes_sent: int, bytes_received: int) -> float:
        """Energy of a round: CPU active while computing, radio on while moving bytes."""
        charge = (
            self.active_current_a * compute_s
            + self.radio_tx_current_a * self.radio_seconds(bytes_sent)
            + self.radio_rx_current_a * self.radio_seconds(bytes_received)
        )
        return charge * self.supply_voltage_v

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["usable_ram_bytes"] = self.usable_ram_bytes
        data["usable_flash_bytes"] = self.usable_flash_bytes
        return data


NANO_33_BLE_SENSE = DeviceProfile(
    name="nano33ble",
    board="Arduino Nano 33 BLE Sense",
    mcu="nRF52840",
    architecture="ARM Cortex-M4F",
    clock_hz=64_000_000,
    ram_bytes=256 * KB,
    flash_bytes=1 * MB,
    reserved_ram_bytes=(256 - 172) * KB,
    reserved_flash_bytes=(1024 - 628) * KB,
    has_fpu=True,
    supply_voltage_v=3.3,
    active_current_a=3.3e-3,  # 52 uA/MHz from flash, DC/DC on
    radio="BLE 5.0",
    radio_bitrate_bps=700_000,
    radio_tx_current_a=4.8e-3,  # 0 dBm, DC/DC
    radio_rx_current_a=4.6e-3,
    # Measured with `python bench/firmware.py` (time_model; 2026-12-02): the 1-40-40-1 float MLP's
    # SGD step is 74,460 instructions for its 3 x 1,680 counted MACs = 14.8 (its forward alone, tanh included: 12.1;
    # a TinyOL head step per counted MAC: 10.1 keywords, 10.9 characters, 27.8 presence, whose 8 x 2 head is mostly
    # fixed costs). Was 4.0, a guess: 3.7x too fast.
    cycles_per_float_mac=14.8,
    # Measured likewise: a compiled int8 backbone's invoke (edge/compiler, TFLM's reference arithmetic, no CMSIS-NN
    # SIMD) per MAC, median of the three task backbones: characters 4.82, presence 5.85, keywords 11.51 (by kernel:
    # CONV_2D 5.61, FULLY_CONNECTED 3.78, DEPTHWISE_CONV_2D 23.1). Was 1.0 (CMSIS-NN's SIMD guess): 4.8-11.5x too fast.
    cycles_per_int8_mac=5.9,
    sensors=("microphone", "accelerometer", "gyroscope", "magnetometer", "temperature", "humidity", "pressure", "light", "proximity", "gesture"),
    runtime="tflite-micro",
)

ESP32_S3 = DeviceProfile(
    name="esp32s3",
    board="Espressif ESP32-S3-DevKitC-1 (N8)",
    mcu="ESP32-S3",
    architecture="Xtensa LX7 dual-core",
    clock_hz=240_000_000,
    ram_bytes=512 * KB,
    flash_bytes=8 * MB,
    reserved_ram_bytes=160 * KB,
    reserved_flash_bytes=1 * MB,
    has_fpu=True,
    supply_voltage_v=3.3,
    active_current_a=40e-3,
    radio="Wi-Fi 802.11n",
    radio_bitrate_bps=5_000_000,
    radio_tx_current_a=285e-3,
    radio_rx_current_a=88e-3,
    cycles_per_float_mac=3.0,
    cycles_per_int8_mac=0.5,
    sensors=("microphone", "camera"),
    runtime="tflite-micro",
)

RP2040_PICO_W = DeviceProfile(
    name="rp2040",
    board="Raspberry Pi Pico W",
    mcu="RP2040",
    architecture="ARM Cortex-M0+ dual-core",
    clock_hz=133_000_000,
    ram_bytes=264 * KB,
    flash_bytes=2 * MB,
    reserved_ram_bytes=64 * KB,
    reserved_flash_bytes=512 * KB,
    has_fpu=False,
    supply_voltage_v=3.3,
    active_current_a=25e-3,
    radio="Wi-Fi 802.11n (CYW43439)",
    radio_bitrate_bps=2_000_000,
    radio_tx_current_a=200e-3,
    radio_rx_current_a=60e-3,
    cycles_per_float_mac=60.0,  # software floating point
    cycles_per_int8_mac=4.0,
    sensors=("temperature",),
    runtime="tflite-micro",
)

STM32F746_DISCO = DeviceProfile(
    name="stm32f746",
    board="STM32F746G-DISCO",
    mcu="STM32F746NG",
    architecture="ARM Cortex-M7F",
    clock_hz=216_000_000,
    ram_bytes=320 * KB,
    flash_bytes=1 * MB,
    reserved_ram_bytes=64 * KB,
    reserved_flash_bytes=256 * KB,
    has_fpu=True,
    supply_voltage_v=3.3,
    active_current_a=100e-3,
    radio="Ethernet 100BASE-TX",
    radio_bitrate_bps=50_000_000,
    radio_tx_current_a=40e-3,
    radio_rx_current_a=40e-3,
    cycles_per_float_mac=2.0,
    cycles_per_int8_mac=0.7,
    sensors=("microphone", "camera"),
    runtime="tflite-micro",
)

RASPBERRY_PI_4 = DeviceProfile(
    name="rpi4",
    board="Raspberry Pi 4 Model B (4 GB)",
    mcu="BCM2711",
    architecture="ARM Cortex-A72 quad-core",
    clock_hz=1_500_000_000,
    ram_bytes=4096 * MB,
    flash_bytes=32768 * MB,  # microSD card
    reserved_ram_bytes=512 * MB,
    reserved_flash_bytes=4096 * MB,
    has_fpu=True,
    supply_voltage_v=5.0,
    active_current_a=0.9,
    radio="Wi-Fi 802.11ac",
    radio_bitrate_bps=50_000_000,
    radio_tx_current_a=0.3,
    radio_rx_current_a=0.2,
    cycles_per_float_mac=0.5,
    cycles_per_int8_mac=0.25,
    sensors=(),
    runtime="litert",
)

PROFILES: dict[str, DeviceProfile] = {
    p.name: p for p in (NANO_33_BLE_SENSE, ESP32_S3, RP2040_PICO_W, STM32F746_DISCO, RASPBERRY_PI_4)
}
MICROCONTROLLERS = tuple(p for p in PROFILES.values() if p.runtime == "tflite-micro")


def get_profile(name: str) -> DeviceProfile:
    try:
        return PROFILES[name]
    except KeyError:
        raise KeyError(f"unknown device profile {name!r}; known: {', '.join(PROFILES)}") from None
