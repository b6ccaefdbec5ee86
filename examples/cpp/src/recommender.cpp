// The engine-independent part of recommend(): ids -> inputs -> backend -> ids, titles, scores.
// Mirrors lite_export/engines/base.py (Engine.recommend) and data/batching.py (pad_histories).
#include "lite/recommender.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <unordered_set>
#include <utility>

namespace lite {

namespace {

// Rows left-padded with pad to a common width: max(1, longest row).
void left_pad(const std::vector<std::vector<std::int64_t>>& rows, std::size_t keep_last,
              std::int64_t pad, std::int64_t* width_out, std::vector<std::int64_t>& out) {
  std::size_t width = 1;
  for (const auto& r : rows) width = std::max(width, std::min(r.size(), keep_last));
  out.assign(rows.size() * width, pad);
  for (std::size_t b = 0; b < rows.size(); ++b) {
    const auto& r = rows[b];
    const std::size_t n = std::min(r.size(), keep_last);
    std::copy(r.end() - static_cast<std::ptrdiff_t>(n), r.end(),
              out.begin() + static_cast<std::ptrdiff_t>(b * width + (width - n)));
  }
  *width_out = static_cast<std::int64_t>(width);
}

// Rows [start, start + n) of a [*, width] row-major array.
std::vector<std::int64_t> rows_of(const std::vector<std::int64_t>& a, std::int64_t width,
                                  std::int64_t start, std::int64_t n) {
  return {a.begin() + start * width, a.begin() + (start + n) * width};
}

// [rows, width] -> [rows, to] left-padded with pad (to >= width).
std::vector<std::int64_t> widen(const std::vector<std::int64_t>& a, std::int64_t rows,
                                std::int64_t width, std::int64_t to, std::int64_t pad) {
  if (to <= width) return a;
  std::vector<std::int64_t> out(static_cast<std::size_t>(rows * to), pad);
  for (std::int64_t r = 0; r < rows; ++r) {
    std::copy(a.begin() + r * width, a.begin() + (r + 1) * width,
              out.begin() + r * to + to - width);
  }
  return out;
}

const char* const kFixItems =
    "Re-export with `lite export --max-shape BATCH,HISTORY` covering it (HISTORY at least the "
    "model's max_history; with --format tensorrt this rebuilds model.plan)";
const char* const kFixExclude =
    "Re-export with a larger `lite export --max-exclude` (and --max-shape BATCH for larger "
    "batches), or recommend with exclude_seen=false (--include-seen)";

std::string shape_str(std::int64_t b, std::int64_t w) {
  return "[" + std::to_string(b) + ", " + std::to_string(w) + "]";
}

void check_shape(const InputProfile& p, const char* name, std::int64_t b, std::int64_t w) {
  const bool items = std::string(name) == "item_ids";
  const ShapeRange& r = items ? p.item_ids : p.exclude_ids;
  if (!r.contains(b, w)) {
    throw ProfileError(std::string("input ") + name + " of shape " + shape_str(b, w) +
                       " is outside the profile of " + p.source + " (" + r.str() + "). " +
                       (items ? kFixItems : kFixExclude));
  }
}

// One model call with the shapes fitted to the profile's minimum (pads added, then dropped);
// scores / indices [in.batch, *k_out].
void call_fitted(const RunFn& run, const InputProfile& p, const ModelInputs& in,
                 std::int64_t pad, std::vector<float>& scores, std::vector<std::int64_t>& indices,
                 std::int64_t* k_out) {
  ModelInputs fit;
  fit.history = std::max(in.history, p.item_ids.min[1]);
  fit.exclude = std::max(in.exclude, p.exclude_ids.min[1]);
  fit.batch = std::max(in.batch, p.min_batch());
  fit.item_ids = widen(in.item_ids, in.batch, in.history, fit.history, pad);
  fit.exclude_ids = widen(in.exclude_ids, in.batch, in.exclude, fit.exclude, pad);
  fit.item_ids.resize(static_cast<std::size_t>(fit.batch * fit.history), pad);
  fit.exclude_ids.resize(static_cast<std::size_t>(fit.batch * fit.exclude), pad);
  check_shape(p, "item_ids", fit.batch, fit.history);
  check_shape(p, "exclude_ids", fit.batch, fit.exclude);
  run(fit, scores, indices, k_out);
  scores.resize(static_cast<std::size_t>(in.batch * *k_out));
  indices.resize(static_cast<std::size_t>(in.batch * *k_out));
}

// The row's ids without pads, each once at its most recent position, oldest first.
std::vector<std::int64_t> distinct_recent(const std::int64_t* row, std::int64_t width,
                                          std::int64_t pad) {
  std::unordered_set<std::int64_t> seen;
  std::vector<std::int64_t> out;
  for (std::int64_t j = width - 1; j >= 0; --j) {
    if (row[j] != pad && seen.insert(row[j]).second) out.push_back(row[j]);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// One batch (within the batch range) whose exclusion is wider than the profile allows:
// lite_export.engines.profile._chunked, line for line. Output [in.batch, k].
void run_chunked(const RunFn& run, const InputProfile& p, const ModelInputs& in, int k,
                 std::int64_t pad, std::vector<float>& scores_out,
                 std::vector<std::int64_t>& indices_out) {
  const std::int64_t max_h = p.exclude_ids.max[1];
  const std::int64_t b = in.batch;
  std::vector<std::vector<std::int64_t>> lists(b), promoted(b);
  std::vector<std::unordered_set<std::int64_t>> excluded(b);
  for (std::int64_t r = 0; r < b; ++r) {
    lists[r] = distinct_recent(in.exclude_ids.data() + r * in.exclude, in.exclude, pad);
    excluded[r].insert(lists[r].begin(), lists[r].end());
  }
  scores_out.assign(static_cast<std::size_t>(b * k), -std::numeric_limits<float>::infinity());
  indices_out.assign(static_cast<std::size_t>(b * k), 0);
  std::set<std::int64_t> pending;
  for (std::int64_t r = 0; r < b; ++r) pending.insert(r);
  std::vector<float> scores;
  std::vector<std::int64_t> indices;
  while (!pending.empty()) {
    std::vector<std::vector<std::int64_t>> inside(b);
    std::size_t width = 1;
    for (std::int64_t r = 0; r < b; ++r) {
      const std::unordered_set<std::int64_t> chosen(promoted[r].begin(), promoted[r].end());
      std::vector<std::int64_t> rest;
      for (const auto v : lists[r]) {
        if (!chosen.count(v)) rest.push_back(v);
      }
      inside[r] = promoted[r];
      const auto room = max_h - static_cast<std::int64_t>(promoted[r].size());
      if (room > 0) {
        const auto n = std::min<std::int64_t>(room, static_cast<std::int64_t>(rest.size()));
        inside[r].insert(inside[r].end(), rest.end() - n, rest.end());
      }
      width = std::max(width, inside[r].size());
    }
    ModelInputs chunk;
    chunk.batch = b;
    chunk.history = in.history;
    chunk.item_ids = in.item_ids;
    chunk.exclude = static_cast<std::int64_t>(width);
    chunk.exclude_ids.assign(static_cast<std::size_t>(b) * width, pad);
    for (std::int64_t r = 0; r < b; ++r) {
      std::copy(inside[r].begin(), inside[r].end(),
                chunk.exclude_ids.begin() + static_cast<std::ptrdiff_t>(
                                                r * chunk.exclude + chunk.exclude -
                                                static_cast<std::int64_t>(inside[r].size())));
    }
    // every row runs each round, so a row's scores never depend on which rows are pending
    std::int64_t model_k = 0;
    call_fitted(run, p, chunk, pad, scores, indices, &model_k);
    for (auto it = pending.begin(); it != pending.end();) {
      const std::int64_t r = *it;
      const float* srow = scores.data() + r * model_k;
      const std::int64_t* irow = indices.data() + r * model_k;
      const std::unordered_set<std::int64_t> in_graph(inside[r].begin(), inside[r].end());
      std::vector<std::int64_t> kept;
      bool exhausted = false;  // every item outside the graph's list is in its top-K
      for (std::int64_t j = 0; j < model_k; ++j) {
        if (!excluded[r].count(irow[j]) && irow[j] != pad) kept.push_back(j);
        if (std::isinf(srow[j]) && srow[j] < 0) exhausted = true;
      }
      if (static_cast<std::int64_t>(kept.size()) >= k || exhausted) {
        const auto n = std::min<std::int64_t>(k, static_cast<std::int64_t>(kept.size()));
        for (std::int64_t j = 0; j < n; ++j) {
          scores_out[r * k + j] = srow[kept[j]];
          indices_out[r * k + j] = irow[kept[j]];
        }
        if (n < k) {  // fewer items than k outside the list: excluded ones at -inf, in ONNX
                      // TopK's tie order (the lower index first), like the unchunked graph
          std::vector<std::int64_t> sorted(excluded[r].begin(), excluded[r].end());
          std::sort(sorted.begin(), sorted.end());
          for (std::int64_t j = n; j < k && j - n < static_cast<std::int64_t>(sorted.size()); ++j) {
            indices_out[r * k + j] = sorted[j - n];
          }
        }
        it = pending.erase(it);
        continue;
      }
      for (std::int64_t j = 0; j < model_k; ++j) {
        if (excluded[r].count(irow[j]) && !in_graph.count(irow[j])) promoted[r].push_back(irow[j]);
      }
      if (static_cast<std::int64_t>(promoted[r].size()) > max_h) {
        throw ProfileError(
            "a history excludes " + std::to_string(lists[r].size()) +
            " distinct ids and more than " + std::to_string(max_h) +
            " of them (the profile's largest exclude_ids width) rank among its top " +
            std::to_string(model_k) + ", so its top-" + std::to_string(k) +
            " cannot be found within the profile of " + p.source + " (" + p.exclude_ids.str() +
            "). " + kFixExclude);
      }
      ++it;
    }
  }
}

}  // namespace

void run_in_profile(const RunFn& run, const ModelInputs& in, int k, const InputProfile& profile,
                    std::int64_t pad_id, std::vector<float>& scores,
                    std::vector<std::int64_t>& indices) {
  if (in.history > profile.item_ids.max[1]) {
    check_shape(profile, "item_ids", std::min(in.batch, profile.max_batch()), in.history);
  }
  scores.assign(static_cast<std::size_t>(in.batch) * k, 0.0f);
  indices.assign(static_cast<std::size_t>(in.batch) * k, 0);
  const std::int64_t step = profile.max_batch();
  std::vector<float> s;
  std::vector<std::int64_t> i;
  for (std::int64_t start = 0; start < in.batch; start += step) {
    ModelInputs part;
    part.batch = std::min(step, in.batch - start);
    part.history = in.history;
    part.exclude = in.exclude;
    part.item_ids = rows_of(in.item_ids, in.history, start, part.batch);
    part.exclude_ids = rows_of(in.exclude_ids, in.exclude, start, part.batch);
    std::int64_t width = k;
    if (part.exclude > profile.exclude_ids.max[1]) {
      run_chunked(run, profile, part, k, pad_id, s, i);
    } else {
      call_fitted(run, profile, part, pad_id, s, i, &width);
      if (width < k) {
        throw EngineError("the model returned " + std::to_string(width) +
                          " items per row, fewer than k=" + std::to_string(k));
      }
    }
    for (std::int64_t r = 0; r < part.batch; ++r) {
      std::copy(s.begin() + r * width, s.begin() + r * width + k,
                scores.begin() + (start + r) * k);
      std::copy(i.begin() + r * width, i.begin() + r * width + k,
                indices.begin() + (start + r) * k);
    }
  }
}

ModelInputs make_inputs(const std::vector<std::vector<std::int64_t>>& histories,
                        std::int64_t max_history, std::int64_t pad_id, bool exclude_seen) {
  if (max_history < 1) throw ArgumentError("max_history must be >= 1");
  ModelInputs in;
  in.batch = static_cast<std::int64_t>(histories.size());
  left_pad(histories, static_cast<std::size_t>(max_history), pad_id, &in.history, in.item_ids);
  if (exclude_seen) {
    // the whole history, not only the most recent max_history items
    std::size_t longest = 1;
    for (const auto& h : histories) longest = std::max(longest, h.size());
    left_pad(histories, longest, pad_id, &in.exclude, in.exclude_ids);
  } else {
    in.exclude = 1;
    in.exclude_ids.assign(histories.size(), pad_id);
  }
  return in;
}

Recommender::Recommender(const std::filesystem::path& artifact, Options options)
    : Recommender(Artifact::open(artifact, options.verify), options) {}

Recommender::Recommender(Artifact artifact, Options options)
    : artifact_(std::move(artifact)), options_(std::move(options)) {
  if (options_.engine == "onnxruntime") {
    backend_ = make_onnxruntime_backend(artifact_, options_);
  } else if (options_.engine == "tensorrt") {
    backend_ = make_tensorrt_backend(artifact_, options_);
  } else {
    const std::string trt = tensorrt_built()
                                ? " or tensorrt"
                                : " (tensorrt: rebuild where CMake finds TensorRT)";
    throw ArgumentError("unknown engine '" + options_.engine + "'; choose onnxruntime" + trt);
  }
  if (options_.enforce_profile) {
    // the plan's profile is what TensorRT enforces; the manifest's otherwise
    profile_ = backend_->profile();
    if (!profile_) profile_ = artifact_.profile();
  }
}

std::vector<Recommendation> Recommender::recommend(
    const std::vector<std::vector<std::string>>& histories, int k, bool exclude_seen) {
  if (k < 1 || k > artifact_.k()) {
    throw ArgumentError("k must be an integer between 1 and " + std::to_string(artifact_.k()) +
                        " (the K this artifact was exported with; re-export with `lite export "
                        "--k` for more), got " +
                        std::to_string(k));
  }
  last_model_ms_ = 0.0;
  if (histories.empty()) return {};
  const auto hists = artifact_.batch_indices(histories);
  const ModelInputs in =
      make_inputs(hists, artifact_.max_history(), artifact_.pad_id(), exclude_seen);

  std::vector<float> scores;
  std::vector<std::int64_t> indices;
  std::int64_t model_k = 0;
  const auto t0 = std::chrono::steady_clock::now();
  if (profile_) {
    const RunFn run = [this](const ModelInputs& m, std::vector<float>& s,
                             std::vector<std::int64_t>& i, std::int64_t* kk) {
      backend_->run(m, s, i, kk);
    };
    run_in_profile(run, in, k, *profile_, artifact_.pad_id(), scores, indices);
    model_k = k;
  } else {
    backend_->run(in, scores, indices, &model_k);
  }
  last_model_ms_ =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  if (model_k < k) {
    throw EngineError("the model returned " + std::to_string(model_k) + " items per row, fewer " +
                      "than k=" + std::to_string(k));
  }

  const auto& items = artifact_.items();
  std::vector<std::int64_t> popular;
  std::vector<Recommendation> out(hists.size());
  for (std::size_t b = 0; b < hists.size(); ++b) {
    auto& rec = out[b];
    rec.indices.reserve(k);
    rec.scores.reserve(k);
    if (hists[b].empty()) {
      if (popular.empty()) popular = artifact_.most_popular(static_cast<std::size_t>(k));
      rec.fallback = true;
      for (const auto i : popular) {
        rec.indices.push_back(i);
        rec.scores.push_back(static_cast<float>(items[i].popularity));
      }
    } else {
      const auto row = static_cast<std::size_t>(b) * static_cast<std::size_t>(model_k);
      for (int j = 0; j < k; ++j) {
        const auto i = indices[row + j];
        if (i < 0 || i >= artifact_.num_items()) {
          throw EngineError("the model returned item index " + std::to_string(i) +
                            " outside the catalog (0.." +
                            std::to_string(artifact_.num_items() - 1) +
                            "): model.onnx and items.jsonl disagree; re-export");
        }
        rec.indices.push_back(i);
        rec.scores.push_back(scores[row + j]);
      }
    }
    rec.ids.reserve(rec.indices.size());
    rec.titles.reserve(rec.indices.size());
    for (const auto i : rec.indices) {
      rec.ids.push_back(items[i].id);
      rec.titles.push_back(items[i].title);
    }
  }
  return out;
}

}  // namespace lite
