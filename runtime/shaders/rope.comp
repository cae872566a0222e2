#version 450
// Rotary position embedding of one token's heads in place, the half-split (NeoX) layout of
// scalar::rope_half_split: for i < half, (a, b) = (x[i], x[i + half]) becomes (a·cos − b·sin, b·cos + a·sin)
// with the position's cos/sin tables. `precise` keeps each product rounded on its own (no fused
// multiply-add), as the CPU computes it: the same bits.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };
layout(std430, binding = 1) readonly buffer Cos { float c[]; };
layout(std430, binding = 2) readonly buffer Sin { float s[]; };

layout(push_constant) uniform Params {
    uint heads;
    uint head_dim;
} p;

void main() {
    const uint half_dim = p.head_dim / 2u;
    const uint pair = gl_GlobalInvocationID.x;
    if (pair >= p.heads * half_dim) {
        return;
    }
    const uint head = pair / half_dim;
    const uint i = pair % half_dim;
    const uint at = head * p.head_dim + i;
    const float a = x[at];
    const float b = x[at + half_dim];
    precise float ac = a * c[i];
    precise float bs = b * s[i];
    precise float bc = b * c[i];
    precise float as_ = a * s[i];
    precise float lo = ac - bs;
    precise float hi = bc + as_;
    x[at] = lo;
    x[at + half_dim] = hi;
}
