#version 450
// out = a + b element by element, b repeating every nb elements (nb = n: the residual adds; nb = a row's
// width: a bias added to every row): one correctly rounded addition each, as on the CPU.

layout(local_size_x = 256) in;

layout(std430, binding = 0) readonly buffer A { float a[]; };
layout(std430, binding = 1) readonly buffer B { float b[]; };
layout(std430, binding = 2) writeonly buffer Output { float o[]; };

layout(push_constant) uniform Params {
    uint n;
    uint nb;
} p;

void main() {
    const uint i = gl_GlobalInvocationID.x;
    if (i < p.n) {
        precise float v = a[i] + b[i % p.nb];
        o[i] = v;
    }
}
