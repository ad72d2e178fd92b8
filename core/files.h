// Atomic file writes: a temporary file, flushed and synced, then renamed over the target,
// so that an interrupted write never destroys the previous file or leaves a half-written one.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace polyak {

// Writes the concatenation of `parts` to a fresh temporary file next to `path` (a name of
// its own, opened exclusively), syncs it to disk and renames it over `path`. On any failure
// the temporary file is removed, `path` is left as it was, and polyak::Error names `fn`,
// the path and the system's reason.
void write_file_atomically(const std::string& path, const std::vector<std::string_view>& parts,
                           const char* fn);

// The same for one text.
void write_text_file_atomically(const std::string& path, const std::string& text, const char* fn);

}  // namespace polyak
