#version 450
#extension GL_EXT_spirv_intrinsics : require
// mat_vec_q6_k with its integer sums from integer dot-product instructions, for devices that report
// shaderIntegerDotProduct: per sixteen, Σ (q − 32)·x = Σ q·x − 32·Σ x with q the unsigned 6-bit values
// packed four to a word (low nibbles | high bits << 4: no carries) and both sums from OpSUDot. The same
// exact integers, so mat_vec_q6_k's, and kquants::dot_q6_k's, bits.

layout(local_size_x = 64) in;

// Weight rows of `blocks` 210-byte super-blocks (128 bytes of low nibbles, 64 of high 2-bit pairs, 16
// signed scales, f16 d), back to back, zero-padded to 4 bytes.
layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
layout(std430, binding = 1) readonly buffer ActQuants { uint xq[]; };
layout(std430, binding = 2) readonly buffer ActScales { float xd[]; };
layout(std430, binding = 3) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint blocks;  // blocks per row (weights and inputs alike)
    uint rows;    // weight rows: the output row stride
    uint row0;    // first weight row of this dispatch
    uint col0;    // first input row of this dispatch
    uint first;   // the first row the weight buffer holds (a weight may be split over several)
} p;

shared float term[64];

spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4452)
int sudot4x8(uint signed_a, uint unsigned_b, spirv_literal int format);

uint byte_at(uint offset) {
    return (wq[offset >> 2u] >> ((offset & 3u) * 8u)) & 0xFFu;
}

// Four bytes from any offset (super-blocks are 210 bytes, so rows need not start on a word).
uint word_at(uint offset) {
    return byte_at(offset) | (byte_at(offset + 1u) << 8u) | (byte_at(offset + 2u) << 16u) | (byte_at(offset + 3u) << 24u);
}

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint row = p.row0 + gl_WorkGroupID.x;
    const uint col = p.col0 + gl_WorkGroupID.y;
    // Thread t makes block base + t's term exactly as the CPU does; thread 0 adds the terms in block order,
    // as scalar::dot_* does: the same floats added in the same order, so the same bits.
    precise float acc = 0.0;
    for (uint base = 0u; base < p.blocks; base += 64u) {
        const uint b = base + t;
        if (b < p.blocks) {
            const uint xb = col * p.blocks + b;  // the input row's block b
            const uint at = ((row - p.first) * p.blocks + b) * 210u;
            int isum = 0;
            for (uint h = 0u; h < 2u; h++) {
                // Quarter k of half h: elements 128h + 32k + l, low nibbles from ql[64h + 32(k & 1) + l] shifted
                // by 4(k >> 1), high bits from qh[32h + l] at 2k; sixteens 2k and 2k + 1 of the half.
                for (uint k = 0u; k < 4u; k++) {
                    const uint low = at + 64u * h + 32u * (k & 1u);
                    const uint shift = 4u * (k >> 1u);
                    for (uint hf = 0u; hf < 2u; hf++) {
                        int qx = 0;
                        int sx = 0;
                        for (uint l = 16u * hf; l < 16u * hf + 16u; l += 4u) {
                            const uint q = ((word_at(low + l) >> shift) & 0x0F0F0F0Fu)
                                | (((word_at(at + 128u + 32u * h + l) >> (2u * k)) & 0x03030303u) << 4u);
                            const uint x = xq[xb * 64u + ((128u * h + 32u * k + l) >> 2u)];
                            qx += sudot4x8(x, q, 0);
                            sx += sudot4x8(x, 0x01010101u, 0);
                        }
                        const int s = qx - 32 * sx;
                        isum += bitfieldExtract(int(byte_at(at + 192u + 8u * h + 2u * k + hf)), 0, 8) * s;
                    }
                }
            }
            precise float d = unpackHalf2x16(byte_at(at + 208u) | (byte_at(at + 209u) << 8u)).x * xd[xb];
            precise float term_b = d * float(isum);
            term[t] = term_b;
        }
        barrier();
        if (t == 0u) {
            const uint count = min(64u, p.blocks - base);
            for (uint i = 0u; i < count; i++) {
                acc += term[i];
            }
        }
        barrier();
    }
    if (t == 0u) {
        o[col * p.rows + row] = acc;
    }
}
