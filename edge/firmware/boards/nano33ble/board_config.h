/* Arduino Nano 33 BLE Sense (nRF52840): 64 MHz Cortex-M4F; TIMER0 runs at 16 MHz. */
#ifndef TINYFLEET_BOARD_CONFIG_H
#define TINYFLEET_BOARD_CONFIG_H
#define BOARD_NAME "nano33ble"
#define BOARD_TICK_HZ 16000000u
#define BOARD_INSTRUCTIONS_PER_TICK 4u /* about: 64 MHz core, 1 IPC */
#endif
