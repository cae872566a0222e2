#version 450
#extension GL_EXT_spirv_intrinsics : require
// mat_vec_q4_k with its integer sums from integer dot-product instructions (OpSUDot: four signed activation
// bytes · four unsigned nibbles per instruction), for devices that report shaderIntegerDotProduct (the
// feature is enabled at device creation there). The sums are the same exact integers, so the result is
// mat_vec_q4_k's, and kquants::dot_q4_k's, bits.

layout(local_size_x = 64) in;

// Weight rows of `blocks` 144-byte super-blocks (f16 d, f16 dmin, 12 bytes of scales and mins, 128 bytes
// of nibbles), back to back.
layout(std430, binding = 0) readonly buffer Weights { uint wq[]; };
// The activation's 256 signed bytes per super-block (64 words each).
layout(std430, binding = 1) readonly buffer ActQuants { uint xq[]; };
// Its scales.
layout(std430, binding = 2) readonly buffer ActScales { float xd[]; };
// Its sums of 16 quants (16 per super-block).
layout(std430, binding = 3) readonly buffer ActSums { int xs[]; };
layout(std430, binding = 4) writeonly buffer Output { float o[]; };

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
            const uint at = ((row - p.first) * p.blocks + b) * 144u;
            const float d = unpackHalf2x16(byte_at(at) | (byte_at(at + 1u) << 8u)).x;
            const float dmin = unpackHalf2x16(byte_at(at + 2u) | (byte_at(at + 3u) << 8u)).x;
            // ggml's get_scale_min_k4 for j = 0..8 over the 12 bytes at 4..16.
            int sc[8];
            int mn[8];
            for (uint j = 0u; j < 4u; j++) {
                const uint s0 = byte_at(at + 4u + j);
                const uint s4 = byte_at(at + 8u + j);
                const uint s8 = byte_at(at + 12u + j);
                sc[j] = int(s0 & 63u);
                mn[j] = int(s4 & 63u);
                sc[j + 4u] = int((s8 & 15u) | ((s0 >> 6u) << 4u));
                mn[j + 4u] = int((s8 >> 4u) | ((s4 >> 6u) << 4u));
            }
            int isum = 0;
            // Super-blocks are 144 bytes, so the nibbles (at + 16) start on a word.
            const uint nibbles = (at + 16u) >> 2u;
            for (uint c = 0u; c < 4u; c++) {
                int lo = 0;
                int hi = 0;
                for (uint w = 0u; w < 8u; w++) {
                    const uint q = wq[nibbles + 8u * c + w];
                    lo += sudot4x8(xq[xb * 64u + 16u * c + w], q & 0x0F0F0F0Fu, 0);
                    hi += sudot4x8(xq[xb * 64u + 16u * c + 8u + w], (q >> 4u) & 0x0F0F0F0Fu, 0);
                }
                isum += sc[2u * c] * lo + sc[2u * c + 1u] * hi;
            }
            int msum = 0;
            for (uint j = 0u; j < 8u; j++) {
                msum += mn[j] * (xs[xb * 16u + 2u * j] + xs[xb * 16u + 2u * j + 1u]);
            }
            precise float dd = d * xd[xb];
            precise float dm = dmin * xd[xb];
            precise float term_b = dd * float(isum) - dm * float(msum);
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
