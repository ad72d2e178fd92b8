// Boundary checks shared by the attention ops; see attention_checks.h.
#include "ops/attention/attention_checks.h"

#include "core/error.h"

namespace polyak::detail {

AttentionDims check_attention_inputs(const char* fn, const Tensor& q, const Tensor& k,
                                     const Tensor& v, bool same_length) {
  check_rank(fn, "q", q, 4, "[B,H,N,D]");
  check_rank(fn, "k", k, 4, same_length ? "[B,H,N,D]" : "[B,H,M,D]");
  check_rank(fn, "v", v, 4, same_length ? "[B,H,N,Dv]" : "[B,H,M,Dv]");
  check_same_dtype(fn, "q", q, "k", k);
  check_same_dtype(fn, "q", q, "v", v);
  check_same_device(fn, "q", q, "k", k);
  check_same_device(fn, "q", q, "v", v);
  check_cpu(fn, "q", q);

  const Shape& qs = q.shape();
  const Shape& ks = k.shape();
  const Shape& vs = v.shape();
  if (same_length) {
    POLYAK_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[2] == qs[2] && ks[3] == qs[3], fn,
                 ": k has shape ", ks, ", expected [B,H,N,D] matching q ", qs, " in B,H,N,D");
    POLYAK_CHECK(vs[0] == qs[0] && vs[1] == qs[1] && vs[2] == qs[2], fn, ": v has shape ", vs,
                 ", expected [B,H,N,Dv] matching q ", qs, " in B,H,N");
  } else {
    POLYAK_CHECK(ks[0] == qs[0] && ks[1] == qs[1] && ks[3] == qs[3], fn, ": k has shape ", ks,
                 ", expected [B,H,M,D] matching q ", qs, " in B,H,D");
    POLYAK_CHECK(vs[0] == ks[0] && vs[1] == ks[1] && vs[2] == ks[2], fn, ": v has shape ", vs,
                 ", expected [B,H,M,Dv] matching k ", ks, " in B,H,M");
  }
  return AttentionDims{qs[0], qs[1], qs[2], ks[2], qs[3], vs[3]};
}

}  // namespace polyak::detail
