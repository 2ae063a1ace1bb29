"""TinyFleet firmware: board support in C and the host tools that build and run it.

``edge.firmware.build`` turns C sources into an ELF for a board
(``build_elf``), plus ``.bin``/``.hex`` and a size report; ``edge.firmware.qemu``
runs an mps2-an386 ELF under QEMU and returns its exit status and output
(``run_elf``). ``serial_link.{h,c}`` is the serial binding's C
codec (COBS frames standing for the device's MQTT topics; its Python twin is
``edge.serial_link``). Both host tools use only the standard library: the
device package stays free of the server's dependencies.
"""
