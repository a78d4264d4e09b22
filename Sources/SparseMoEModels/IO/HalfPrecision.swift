
/// Bit-exact conversions between IEEE binary16 (f16), bfloat16 (bf16) and binary32 (f32).
///
/// Written out on integer bit patterns so they behave identically on every
/// platform (no dependence on `Float16` availability or on the FPU's rounding
/// mode). Widening (f16/bf16 → f32) is exact for every input, subnormals,
/// infinities and NaNs included. Narrowing (f32 → f16/bf16) rounds to nearest,
/// ties to even, overflows to ±infinity, produces subnormals where due, and keeps
/// NaNs NaN (quiet, sign preserved).
public enum HalfPrecision {
    /// f16 bits → f32, exact.
    @inline(__always)
    public static func float(fromFloat16Bits h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int((h >> 10) & 0x1F)
        var mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F {
            // Infinity (mantissa 0) or NaN (payload kept, top bit set → quiet).
            let payload: UInt32 = mantissa == 0 ? 0 : (mantissa << 13) | 0x0040_0000
            return Float(bitPattern: sign | 0x7F80_0000 | payload)
        }
        if exponent == 0 {
            if mantissa == 0 { return Float(bitPattern: sign) }
            // Subnormal: value = mantissa · 2^-24. Normalise into an f32 normal.
            var e = -14
            while mantissa & 0x0400 == 0 { mantissa <<= 1; e -= 1 }
            mantissa &= 0x03FF
            return Float(bitPattern: sign | UInt32(e + 127) << 23 | mantissa << 13)
        }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | mantissa << 13)
    }

    /// f32 → f16 bits, round to nearest even.
    @inline(__always)
    public static func float16Bits(from f: Float) -> UInt16 {
        let x = f.bitPattern
        let sign = UInt16((x >> 16) & 0x8000)
        let exponent = Int((x >> 23) & 0xFF)
        let mantissa = x & 0x007F_FFFF
        if exponent == 0xFF {
            if mantissa == 0 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: mantissa >> 13)  // quiet NaN, high payload kept
        }
        let e = exponent - 127 + 15  // biased f16 exponent
        if e >= 0x1F { return sign | 0x7C00 }  // overflow → inf
        if e <= 0 {
            // Result is subnormal (or zero): shift the full significand right.
            if e < -10 { return sign }  // below half the smallest subnormal → ±0
            let significand = mantissa | 0x0080_0000  // 24 bits
            let shift = UInt32(14 - e)  // 14...24
            let kept = significand >> shift
            let remainder = significand & ((1 << shift) - 1)
            let half = UInt32(1) << (shift - 1)
            var result = kept
            if remainder > half || (remainder == half && kept & 1 == 1) { result += 1 }
            return sign | UInt16(result)  // a carry into bit 10 correctly yields the smallest normal
        }
        var result = UInt32(e) << 10 | mantissa >> 13
        let remainder = mantissa & 0x1FFF
        if remainder > 0x1000 || (remainder == 0x1000 && result & 1 == 1) { result += 1 }  // may carry into inf: correct
        return sign | UInt16(result)
    }

    /// bf16 bits → f32, exact (bf16 is the top half of an f32).
    @inline(__always)
    public static func float(fromBFloat16Bits b: UInt16) -> Float {
        Float(bitPattern: UInt32(b) << 16)
    }

    /// f32 → bf16 bits, round to nearest even.
    @inline(__always)
    public static func bfloat16Bits(from f: Float) -> UInt16 {
        let x = f.bitPattern
        if x & 0x7F80_0000 == 0x7F80_0000 && x & 0x007F_FFFF != 0 {
            return UInt16(x >> 16) | 0x0040  // NaN stays NaN (quiet)
        }
        let rounded = x &+ 0x7FFF &+ ((x >> 16) & 1)
        return UInt16(rounded >> 16)
    }
}
