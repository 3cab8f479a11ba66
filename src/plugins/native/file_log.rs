//! `file-log`: appends one JSON line per request (Kong's log serializer shape) to a file.
//! Lines are written with one `write` on an O_APPEND descriptor shared by the workers, after
//! the response was sent; `reopen` opens the file for every line (log rotation by rename).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, LazyLock, Mutex};

use serde::Deserialize;

use super::{log_serializer, BuildCtx, Bundled};
use crate::plugins::{Instance, Phase, PhaseCtx, PluginError};

/// The plugin.
pub(super) static PLUGIN: Bundled = Bundled {
    name: "file-log",
    priority: 9,
    schema: SCHEMA,
    build,
};

const SCHEMA: &str = r#"
local typedefs = require "kong.db.schema.typedefs"
return {
  name = "file-log",
  fields = {
    { protocols = typedefs.protocols },
    { config = { type = "record", fields = {
      { path = { type = "string", required = true, match = [[^[^*&%%\`]+$]],
                 err = "not a valid filename" } },
      { reopen = { type = "boolean", required = true, default = false } },
      { custom_fields_by_lua = { type = "map", keys = { type = "string", len_min = 1 },
                                 values = { type = "string", len_min = 1 } } },
    } } },
  },
}
"#;

#[derive(Debug, Deserialize)]
struct Conf {
    path: PathBuf,
    reopen: bool,
    custom_fields_by_lua: Option<HashMap<String, String>>,
}

struct FileLog {
    path: PathBuf,
    reopen: bool,
}

fn build(ctx: &BuildCtx<'_>) -> Result<Arc<dyn Instance>, String> {
    let conf: Conf = ctx.decode()?;
    if conf.custom_fields_by_lua.is_some_and(|m| !m.is_empty()) {
        return Err("custom_fields_by_lua is not supported by this gateway".into());
    }
    Ok(Arc::new(FileLog {
        path: conf.path,
        reopen: conf.reopen,
    }))
}

/// Open log files, shared by every instance and worker writing to the same path.
static FILES: LazyLock<Mutex<HashMap<PathBuf, Arc<File>>>> = LazyLock::new(Default::default);

fn open(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl FileLog {
    fn file(&self) -> std::io::Result<Arc<File>> {
        if self.reopen {
            return open(&self.path).map(Arc::new);
        }
        let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = files.get(&self.path) {
            return Ok(f.clone());
        }
        let f = Arc::new(open(&self.path)?);
        files.insert(self.path.clone(), f.clone());
        Ok(f)
    }
}

impl Instance for FileLog {
    fn phases(&self) -> &[Phase] {
        &[Phase::Log]
    }

    fn needs_log_data(&self) -> bool {
        true
    }

    fn log(&self, ctx: &mut PhaseCtx<'_>) -> Result<(), PluginError> {
        let mut line = log_serializer::serialize(ctx).to_string();
        line.push('\n');
        let file = self
            .file()
            .map_err(|e| PluginError(format!("cannot open {}: {e}", self.path.display())))?;
        // One write per line: O_APPEND keeps concurrent lines whole.
        (&*file)
            .write_all(line.as_bytes())
            .map_err(|e| PluginError(format!("cannot write {}: {e}", self.path.display())))
    }
}
