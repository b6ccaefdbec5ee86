// lite::Recommender: top-K recommendations from an exported artifact, in C++.
//
// Same contract as the Python engines (`lite_export.load(art).recommend(...)`): histories of
// external ids in, per history the top-k external ids and float32 scores out (best first); an
// empty history gets the most-popular items (fallback); unknown ids throw UnknownItemError.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lite/artifact.hpp"

namespace lite {

// The graph's two int64 inputs, row-major, exactly as the Python engines build them.
struct ModelInputs {
  std::int64_t batch = 0;
  std::int64_t history = 0;  // L: min(max_history, longest history), at least 1
  std::int64_t exclude = 0;  // H: longest history (at least 1) or 1 without exclusion
  std::vector<std::int64_t> item_ids;     // [batch, history], left-padded with pad_id
  std::vector<std::int64_t> exclude_ids;  // [batch, exclude], left-padded with pad_id
};

// item_ids keeps the most recent max_history items of each history; exclude_ids holds the whole
// history when exclude_seen, else one column of pads.
ModelInputs make_inputs(const std::vector<std::vector<std::int64_t>>& histories,
                        std::int64_t max_history, std::int64_t pad_id, bool exclude_seen);

// One history's answer.
struct Recommendation {
  std::vector<std::string> ids;      // external ids, best first
  std::vector<std::string> titles;   // from items.jsonl
  std::vector<float> scores;         // the model's scores (popularity for a fallback row)
  std::vector<std::int64_t> indices; // internal indices
  bool fallback = false;             // empty history: the most-popular items
};

struct Options {
  std::string engine = "onnxruntime";  // "onnxruntime" | "tensorrt" (when built with TensorRT)
  std::string graph;  // ONNX Runtime: "" = model.ort.onnx if present, else model.onnx
  int threads = 0;                     // ONNX Runtime intra-op threads; 0 = its default
  bool verify = true;                  // check every file's sha256 before loading
  // keep every model call inside the input profile (the TensorRT plan's, else manifest.json's):
  // large batches split, long exclusion lists chunked with identical answers
  bool enforce_profile = true;
};

// A runtime that maps ModelInputs to scores/indices [batch, K].
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;
  virtual std::string describe() const = 0;  // graph or plan, runtime version, threads
  // scores and indices are resized to [batch, *k_out] (row-major).
  virtual void run(const ModelInputs& in, std::vector<float>& scores,
                   std::vector<std::int64_t>& indices, std::int64_t* k_out) = 0;
  // The shapes this runtime accepts, when it has its own (a TensorRT plan's profile).
  virtual std::optional<InputProfile> profile() const { return std::nullopt; }
};

// One model call: ModelInputs -> scores, indices [batch, *k_out].
using RunFn = std::function<void(const ModelInputs&, std::vector<float>&,
                                 std::vector<std::int64_t>&, std::int64_t*)>;

// run() over a batch of any size and exclusion width with every call inside profile, exactly as
// lite_export.engines.profile.run_in_profile: batches above the profile split, below it padded
// with rows of pads; widths below the minimum left-padded; an exclusion wider than exclude_ids'
// maximum chunked (the distinct ids, most recent first, excluded in the graph, the rest masked
// from its top-K, rerun with the high-ranking ones moved in while fewer than k remain).
// scores / indices get [in.batch, k]. Throws ProfileError for item_ids wider than the profile
// and for a history whose exclusion cannot be chunked.
void run_in_profile(const RunFn& run, const ModelInputs& in, int k, const InputProfile& profile,
                    std::int64_t pad_id, std::vector<float>& scores,
                    std::vector<std::int64_t>& indices);

std::unique_ptr<Backend> make_onnxruntime_backend(const Artifact& art, const Options& opt);
std::unique_ptr<Backend> make_tensorrt_backend(const Artifact& art, const Options& opt);
bool tensorrt_built();  // whether this build has the TensorRT backend
std::string onnxruntime_version();  // of the libonnxruntime loaded at run time

class Recommender {
 public:
  explicit Recommender(const std::filesystem::path& artifact, Options options = {});
  Recommender(Artifact artifact, Options options);

  // Top-k per history (1 <= k <= artifact().k(); ArgumentError otherwise). One model call for
  // the whole batch.
  std::vector<Recommendation> recommend(const std::vector<std::vector<std::string>>& histories,
                                        int k = 10, bool exclude_seen = true);

  const Artifact& artifact() const noexcept { return artifact_; }
  const Backend& backend() const noexcept { return *backend_; }
  // The profile recommend() keeps to: the backend's own, else the artifact's; none for an
  // artifact exported before profiles were recorded (or with enforce_profile off).
  const std::optional<InputProfile>& profile() const noexcept { return profile_; }
  // Milliseconds spent inside the runtime by the last recommend() (the rest is id mapping,
  // input building and assembling the answer).
  double last_model_ms() const noexcept { return last_model_ms_; }

 private:
  Artifact artifact_;
  Options options_;
  std::unique_ptr<Backend> backend_;
  std::optional<InputProfile> profile_;
  double last_model_ms_ = 0.0;
};

}  // namespace lite
