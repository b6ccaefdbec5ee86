// The engine-independent part of recommend(): ids -> inputs -> backend -> ids, titles, scores.
// Mirrors lite_export/engines/base.py (Engine.recommend) and data/batching.py (pad_histories).
#include "lite/recommender.hpp"

#include <algorithm>
#include <chrono>
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

}  // namespace

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
  backend_->run(in, scores, indices, &model_k);
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
