use mlua::chunk;
fn main() {
    let _ = chunk! { $42 };
}
