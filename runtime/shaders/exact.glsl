// The CPU's float arithmetic, reproduced exactly on any Vulkan device (included by the shaders that must
// give the CPU kernels' bits).
//
// Vulkan guarantees correctly rounded addition, subtraction and multiplication (and `precise` keeps the
// compiler from fusing or reordering them), but only 2.5 ULP for division and an approximate square root,
// and its exp is good to 3 + 2|x| ULP. So division and square root are done here on the integer
// significands (long division, digit-by-digit root; 24 steps each, exact, ties to even), exp is the CPU's
// own algorithm (kernels::scalar::exp_f32: Cody–Waite reduction, Cephes polynomial, two power-of-two
// scalings), and f32 ↔ f16 conversions are integer operations. Zero, subnormal, infinite and NaN operands of
// the division and square root take the device's own instruction (the kernels never feed them such values
// but for an all-zero row, where the device's result is exact too).

// The CPU's constants (kernels::scalar), as their bits.
#define EXP_P0 uintBitsToFloat(0x39506967u)
#define EXP_P1 uintBitsToFloat(0x3ab743ceu)
#define EXP_P2 uintBitsToFloat(0x3c088908u)
#define EXP_P3 uintBitsToFloat(0x3d2aa9c1u)
#define EXP_P4 uintBitsToFloat(0x3e2aaaaau)
#define EXP_P5 uintBitsToFloat(0x3f000000u)
#define EXP_C1 uintBitsToFloat(0x3f318000u)
#define EXP_C2 uintBitsToFloat(0xb95e8083u)
#define LOG2E uintBitsToFloat(0x3fb8aa3bu)
#define EXP_LO uintBitsToFloat(0xc2d00000u)
#define EXP_HI uintBitsToFloat(0x42b20000u)
#define ROUND_MAGIC uintBitsToFloat(0x4b400000u)

// a / b, correctly rounded (ties to even), for normal a and b whose quotient is normal.
float div_rn(float a, float b) {
    const uint ua = floatBitsToUint(a);
    const uint ub = floatBitsToUint(b);
    const uint ea = (ua >> 23u) & 0xFFu;
    const uint eb = (ub >> 23u) & 0xFFu;
    if (ea == 0u || ea == 255u || eb == 0u || eb == 255u) {
        return a / b;
    }
    const uint sign = (ua ^ ub) & 0x80000000u;
    uint ma = (ua & 0x7FFFFFu) | 0x800000u;
    const uint mb = (ub & 0x7FFFFFu) | 0x800000u;
    int e = int(ea) - int(eb) + 127;
    if (ma < mb) {
        ma <<= 1u;
        e -= 1;
    }
    // ma / mb in [1, 2): 24 quotient bits by restoring division; r ends as twice the remainder.
    uint q = 0u;
    uint r = ma;
    for (int i = 0; i < 24; i++) {
        q <<= 1u;
        if (r >= mb) {
            r -= mb;
            q |= 1u;
        }
        r <<= 1u;
    }
    if (r > mb || (r == mb && (q & 1u) == 1u)) {
        q += 1u;
    }
    if (q == 0x1000000u) {
        q >>= 1u;
        e += 1;
    }
    if (e <= 0 || e >= 255) {
        return a / b;
    }
    return uintBitsToFloat(sign | (uint(e) << 23u) | (q & 0x7FFFFFu));
}

// √x, correctly rounded, for positive normal x.
float sqrt_rn(float x) {
    const uint u = floatBitsToUint(x);
    const uint ex = (u >> 23u) & 0xFFu;
    if (ex == 0u || ex == 255u || (u >> 31u) != 0u) {
        return sqrt(x);
    }
    const uint m = (u & 0x7FFFFFu) | 0x800000u;
    // x = m · 2^E; M = m · 2^s with E − s even and M in [2^46, 2^48), so ⌊√M⌋ has 24 bits.
    const int big_e = int(ex) - 150;
    const int s = ((big_e & 1) == 0) ? 24 : 23;
    uint rem = 0u;
    uint root = 0u;
    for (int i = 0; i < 24; i++) {
        // Bits (lo + 1, lo) of m: M's pair at positions 47 − 2i, 46 − 2i.
        const int lo = 46 - 2 * i - s;
        uint two = 0u;
        if (lo >= 0) {
            two = (m >> uint(lo)) & 3u;
        } else if (lo == -1) {
            two = (m << 1u) & 3u;
        }
        rem = (rem << 2u) | two;
        const uint trial = (root << 2u) | 1u;
        root <<= 1u;
        if (rem >= trial) {
            rem -= trial;
            root |= 1u;
        }
    }
    // √M lies in [root, root + 1); it is past the half exactly when M − root² > root (never on it).
    int e = (big_e - s) / 2 + 23 + 127;
    if (rem > root) {
        root += 1u;
    }
    if (root == 0x1000000u) {
        root >>= 1u;
        e += 1;
    }
    return uintBitsToFloat((uint(e) << 23u) | (root & 0x7FFFFFu));
}

// f32 → f16 bits, rounding to nearest even (subnormal halves included), as quant::f32_to_f16_bits.
uint f32_to_f16_rne(float f) {
    const uint x = floatBitsToUint(f);
    const uint sign = (x >> 16u) & 0x8000u;
    const uint e = (x >> 23u) & 0xFFu;
    const uint man = x & 0x7FFFFFu;
    if (e == 255u) {
        return sign | 0x7C00u | ((man != 0u) ? 0x200u : 0u);
    }
    const int he = int(e) - 112;
    if (he >= 31) {
        return sign | 0x7C00u;
    }
    if (he <= 0) {
        if (he < -10) {
            return sign;
        }
        const uint m = man | 0x800000u;
        const uint shift = uint(14 - he);
        uint h = m >> shift;
        const uint rest = m & ((1u << shift) - 1u);
        const uint halfway = 1u << (shift - 1u);
        if (rest > halfway || (rest == halfway && (h & 1u) != 0u)) {
            h += 1u;
        }
        return sign | h;
    }
    uint h = sign | (uint(he) << 10u) | (man >> 13u);
    const uint rest = man & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u) != 0u)) {
        h += 1u;
    }
    return h;
}

// f16 bits → f32, exactly (subnormal halves too, whatever the device does with 16-bit denormals).
float f16_to_f32(uint h) {
    const uint sign = (h & 0x8000u) << 16u;
    const uint e = (h >> 10u) & 0x1Fu;
    const uint man = h & 0x3FFu;
    if (e == 0u) {
        precise float v = float(man) * uintBitsToFloat(0x33800000u);  // man · 2⁻²⁴, exact
        return uintBitsToFloat(sign | floatBitsToUint(v));
    }
    if (e == 31u) {
        return uintBitsToFloat(sign | 0x7F800000u | (man << 13u));
    }
    return uintBitsToFloat(sign | ((e + 112u) << 23u) | (man << 13u));
}

// min(max(v, lo), hi) letting NaN through, in the CPU's operand order (scalar::clamp_keep_nan).
float clamp_keep_nan(float v, float lo, float hi) {
    const float r = (hi < v) ? hi : v;
    return (lo > r) ? lo : r;
}

// e^r · 2ⁿ (scalar::exp_finish).
float exp_finish(int n, float r) {
    precise float q = EXP_P0;
    q = q * r + EXP_P1;
    q = q * r + EXP_P2;
    q = q * r + EXP_P3;
    q = q * r + EXP_P4;
    q = q * r + EXP_P5;
    precise float y = q * (r * r) + r + 1.0;
    const int n1 = n >> 1;
    const int n2 = n - n1;
    const float s1 = intBitsToFloat((n1 + 127) << 23);
    const float s2 = intBitsToFloat((n2 + 127) << 23);
    precise float out_ = y * s1 * s2;
    return out_;
}

// e^x (scalar::exp_f32).
float exp_f32(float x) {
    const float xc = clamp_keep_nan(x, EXP_LO, EXP_HI);
    precise float t = xc * LOG2E + ROUND_MAGIC;
    precise float nf = t - ROUND_MAGIC;
    const int n = floatBitsToInt(t) - floatBitsToInt(ROUND_MAGIC);
    precise float r = (xc - nf * EXP_C1) - nf * EXP_C2;
    return exp_finish(n, r);
}

// The CPU's fixed combination of eight lane sums (scalar::reduce8).
float reduce8(float a0, float a1, float a2, float a3, float a4, float a5, float a6, float a7) {
    precise float s = ((a0 + a4) + (a1 + a5)) + ((a2 + a6) + (a3 + a7));
    return s;
}
