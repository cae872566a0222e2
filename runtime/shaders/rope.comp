#version 450
// Rotary position embedding of the heads of `rows` tokens in place, the half-split (NeoX) layout of
// scalar::rope_half_split: for i < half, (a, b) = (x[i], x[i + half]) becomes (a·cos − b·sin, b·cos + a·sin)
// with the token's row of the cos/sin tables ([rows, half]). `precise` keeps each product rounded on its own (no fused
// multiply-add), as the CPU computes it: the same bits.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Cos { float c[]; };
layout(std430, binding = 2) readonly buffer Sin { float s[]; };

layout(push_constant) uniform Params {
    uint heads;
    uint head_dim;
    uint rows;
} p;

void main() {
    const uint half_dim = p.head_dim / 2u;
    const uint pair = gl_GlobalInvocationID.x;
    if (pair >= p.rows * p.heads * half_dim) {
        return;
    }
    const uint row = pair / (p.heads * half_dim);
    const uint head = pair / half_dim;  // counted over all rows: rows are heads × head_dim apart
    const uint i = pair % half_dim;
    const uint at = head * p.head_dim + i;
    const uint t = row * half_dim + i;
    const float a = x[at];
    const float b = x[at + half_dim];
    precise float ac = a * c[t];
    precise float bs = b * s[t];
    precise float bc = b * c[t];
    precise float as_ = a * s[t];
    precise float lo = ac - bs;
    precise float hi = bc + as_;
    x[at] = lo;
    x[at + half_dim] = hi;
}
