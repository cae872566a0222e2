#version 450
// Softmax of each row in place, one row per workgroup, as scalar::softmax_in_place: the row's maximum,
// e = exp(x − max), their sum, then e · (1 / sum). Vulkan's exp is good to 3 + 2·|x| ULP (the CPU's exp_f32
// to 2) and the sum runs in another order, so the rows agree within a bound, not bit for bit.

layout(local_size_x = 256) in;

layout(std430, binding = 0) buffer X { float x[]; };

layout(push_constant) uniform Params {
    uint n;
} p;

shared float partial[256];

void main() {
    const uint t = gl_LocalInvocationID.x;
    const uint base = gl_WorkGroupID.x * p.n;
    float m = -1.0 / 0.0;
    for (uint i = t; i < p.n; i += 256u) {
        m = max(m, x[base + i]);
    }
    partial[t] = m;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1u) {
        if (t < k) {
            partial[t] = max(partial[t], partial[t + k]);
        }
        barrier();
    }
    const float row_max = partial[0];
    barrier();
    float s = 0.0;
    for (uint i = t; i < p.n; i += 256u) {
        const float e = exp(x[base + i] - row_max);
        x[base + i] = e;
        s += e;
    }
    partial[t] = s;
    barrier();
    for (uint k = 128u; k > 0u; k >>= 1u) {
        if (t < k) {
            partial[t] += partial[t + k];
        }
        barrier();
    }
    const float inv = 1.0 / partial[0];
    for (uint i = t; i < p.n; i += 256u) {
        x[base + i] *= inv;
    }
}
