//! Output on COM1 (a 16550 UART at I/O port 0x3f8), which QEMU's `-serial stdio`
//! hands to the runner, and the `println!` macro that writes there.

use core::fmt;

use spin::Mutex;
use x86_64::instructions::port::{Port, PortReadOnly};

/// I/O base of COM1.
const COM1: u16 = 0x3f8;
/// Line status register bit: the transmit holding register is empty.
const LSR_THR_EMPTY: u8 = 1 << 5;

/// A 16550 UART used for output only.
#[derive(Debug)]
pub struct Uart {
    data: Port<u8>,
    int_enable: Port<u8>,
    fifo_ctrl: Port<u8>,
    line_ctrl: Port<u8>,
    modem_ctrl: Port<u8>,
    line_status: PortReadOnly<u8>,
}

impl Uart {
    /// The UART at COM1. Nothing is touched until [`Uart::init`] or a write.
    pub const fn com1() -> Self {
        Uart {
            data: Port::new(COM1),
            int_enable: Port::new(COM1 + 1),
            fifo_ctrl: Port::new(COM1 + 2),
            line_ctrl: Port::new(COM1 + 3),
            modem_ctrl: Port::new(COM1 + 4),
            line_status: PortReadOnly::new(COM1 + 5),
        }
    }

    /// Programs 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init(&mut self) {
        // SAFETY: these are COM1's registers; the kernel runs on one CPU with
        // interrupts off, and only this UART value (behind `SERIAL`'s lock, or the
        // panic path after everything else stopped) drives them.
        unsafe {
            self.int_enable.write(0x00);
            self.line_ctrl.write(0x80); // DLAB: the next two ports are the divisor
            self.data.write(0x01); // divisor 1 = 115200 baud
            self.int_enable.write(0x00);
            self.line_ctrl.write(0x03); // 8 data bits, no parity, 1 stop bit
            self.fifo_ctrl.write(0xc7); // enable and clear FIFOs
            self.modem_ctrl.write(0x03); // DTR, RTS
        }
    }

    fn write_byte(&mut self, b: u8) {
        // SAFETY: as in `init`: COM1's status and data registers, driven by one owner.
        unsafe {
            while self.line_status.read() & LSR_THR_EMPTY == 0 {
                core::hint::spin_loop();
            }
            self.data.write(b);
        }
    }
}

impl fmt::Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        s.bytes().for_each(|b| self.write_byte(b));
        Ok(())
    }
}

static SERIAL: Mutex<Uart> = Mutex::new(Uart::com1());

/// Initialises COM1; call once, first thing.
pub fn init() {
    SERIAL.lock().init();
}

/// Writes formatted text to COM1 (the macros' back end).
pub fn print(args: fmt::Arguments<'_>) {
    // Writing to the UART cannot fail.
    let _ = fmt::Write::write_fmt(&mut *SERIAL.lock(), args);
}

/// A writer for the panic and exception paths that does not take `SERIAL`'s lock (it
/// may be held by the code that failed). Those paths end the run, so two writers never
/// interleave for long.
pub fn emergency_writer() -> Uart {
    Uart::com1()
}

/// Prints a line to the serial console.
macro_rules! println {
    () => ($crate::serial::print(format_args!("\n")));
    ($($arg:tt)*) => ($crate::serial::print(format_args!("{}\n", format_args!($($arg)*))));
}
