// lite::Artifact: an exported lite-export artifact directory (format version 1), read in C++.
//
// The directory holds manifest.json (format tag and version, dims, the sha256 and size of every
// file), items.jsonl (internal index -> external id, title, popularity) and model.onnx /
// model.ort.onnx / model.plan. Artifact::open checks the manifest and, unless asked not to, the
// size and sha256 of every file it lists before anything runs, like `lite_export.load` does.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

namespace lite {

// Every error this library throws; what() says what was asked, what is there and what to do.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A missing, damaged or unreadable artifact, or one written by a newer lite-export.
class ArtifactError : public Error {
 public:
  using Error::Error;
};

// A call's argument is out of range (k, an unknown engine, a missing graph file).
class ArgumentError : public Error {
 public:
  using Error::Error;
};

// A runtime (ONNX Runtime, TensorRT) failed or is not built in.
class EngineError : public Error {
 public:
  using Error::Error;
};

// An input shape outside the artifact's input profile that cannot be fitted into it (a plan built
// for shorter histories, or a history whose exclusion cannot be chunked); says what to re-export.
class ProfileError : public Error {
 public:
  using Error::Error;
};

// Histories name item ids that items.jsonl does not contain; unknown() lists them all.
class UnknownItemError : public Error {
 public:
  UnknownItemError(std::vector<std::string> unknown, std::size_t num_items);
  const std::vector<std::string>& unknown() const noexcept { return unknown_; }

 private:
  std::vector<std::string> unknown_;
};

inline constexpr const char* kArtifactFormat = "lite-export-artifact";
inline constexpr int kArtifactVersion = 1;

// One row of items.jsonl.
struct Item {
  std::string id;          // external id, as the user's data names it
  std::string title;
  std::int64_t popularity = 0;  // training interactions; orders the empty-history fallback
  bool retired = false;         // removed by `lite catalog remove`: never recommended
};

// min / opt / max [batch, width] of one rank-2 graph input.
struct ShapeRange {
  std::int64_t min[2] = {1, 1}, opt[2] = {1, 1}, max[2] = {1, 1};
  bool contains(std::int64_t batch, std::int64_t width) const {
    return min[0] <= batch && batch <= max[0] && min[1] <= width && width <= max[1];
  }
  std::string str() const;  // "min [1, 1], opt [16, 50], max [256, 50]"
};

// The shapes the ranking graph accepts (manifest.json "profile", or a TensorRT plan's own), like
// lite_export.engines.profile.InputProfile; source names where it was read.
struct InputProfile {
  ShapeRange item_ids, exclude_ids;
  std::string source = "manifest.json";
  std::int64_t max_batch() const { return std::min(item_ids.max[0], exclude_ids.max[0]); }
  std::int64_t min_batch() const { return std::max(item_ids.min[0], exclude_ids.min[0]); }
};

// One file listed in the manifest.
struct FileEntry {
  std::string sha256;  // lower-case hex
  std::uintmax_t bytes = 0;
};

// The hex sha256 of a file (OpenSSL libcrypto, streamed in 4 MiB blocks).
std::string sha256_file(const std::filesystem::path& path);

class Artifact {
 public:
  // Reads manifest.json and items.jsonl; with verify, checks the size and sha256 of every file
  // the manifest lists first. Throws ArtifactError naming the file and the fix.
  static Artifact open(const std::filesystem::path& dir, bool verify = true);

  const std::filesystem::path& dir() const noexcept { return dir_; }
  std::filesystem::path file(const std::string& name) const { return dir_ / name; }
  bool has_file(const std::string& name) const { return files_.count(name) != 0; }
  const std::map<std::string, FileEntry>& files() const noexcept { return files_; }

  std::int64_t num_items() const noexcept { return num_items_; }
  std::int64_t max_history() const noexcept { return max_history_; }
  std::int64_t k() const noexcept { return k_; }            // the K exported into the graph
  std::int64_t pad_id() const noexcept { return pad_id_; }  // = num_items
  int format_version() const noexcept { return format_version_; }
  const std::string& precision() const noexcept { return precision_; }
  const std::string& lite_export_version() const noexcept { return lite_export_version_; }
  const std::vector<Item>& items() const noexcept { return items_; }
  // The input profile manifest.json records (absent for artifacts exported before it was).
  const std::optional<InputProfile>& profile() const noexcept { return profile_; }

  // Internal indices of one history's external ids; UnknownItemError names every unknown id.
  std::vector<std::int64_t> indices(const std::vector<std::string>& external_ids) const;
  // indices() for many histories; the error names the unknown ids of all of them.
  std::vector<std::vector<std::int64_t>> batch_indices(
      const std::vector<std::vector<std::string>>& histories) const;
  // The k most popular items (ties: lower index first): the empty-history fallback.
  std::vector<std::int64_t> most_popular(std::size_t k) const;

 private:
  std::filesystem::path dir_;
  std::map<std::string, FileEntry> files_;
  std::int64_t num_items_ = 0, max_history_ = 0, k_ = 0, pad_id_ = 0;
  int format_version_ = 0;
  std::string precision_, lite_export_version_;
  std::vector<Item> items_;
  std::optional<InputProfile> profile_;
  std::unordered_map<std::string, std::int64_t> index_;
  std::vector<std::int64_t> popular_order_;
};

}  // namespace lite
