//! teams-emulator
