// Package file is the filesystem storage.Store, pacsd's embedded default.
// Each object is a regular file named by its key below a root directory.
//
// # Durability
//
// Put writes into a temporary file in the key's directory, fsyncs it,
// renames it over the key and fsyncs the directory, so that once Put
// returns the object survives a power cut and a reader never sees a
// half-written file. Directories that Put creates are made durable too,
// by fsyncing each new directory's parent before anything is written into
// it. Delete fsyncs the directory after removing the file.
//
// # Temporary files
//
// Temporary files are named ".put~" followed by 16 hexadecimal digits.
// No key can contain '~', so Open, Stat and List never see them and no
// object can be mistaken for one. Only a crash of the process or machine
// during a Put leaves one behind; Clean removes them. New does not clean,
// because walking an archive of millions of files would delay startup;
// the program that opens the store should call Clean once at startup,
// in the background if it likes.
//
// # Layout and permissions
//
// Directories are created as keys need them and removed by Delete when it
// leaves them empty, so the tree mirrors the keys in use. Files are
// created with mode 0o644 and directories with 0o755 by default (see
// WithFileMode and WithDirMode), less the process umask.
//
// # Trust
//
// The root and everything below it must be writable only by pacsd. Keys
// cannot name anything outside the root (see storage.ValidKey), and every
// access goes through an os.Root, so a symbolic link planted inside the
// root cannot lead outside it either: such a link is refused with an
// error. Links that stay inside the root are followed by Open, Stat and
// Put but never by List, which yields regular files only. Beyond that the
// store does not defend against someone who can write into the root: such
// a person can replace objects at will.
//
// Several Stores, also in several processes, may share one root: temporary
// names are unique and every commit is a rename. The one thing a Store
// cannot see is another Store creating a directory: a Put into a directory
// that another Store made a moment ago may return just before that
// Store has made the directory's entry durable.
//
// # Platforms
//
// The store relies on POSIX semantics: renaming over a file that readers
// hold open, and fsync of directories. It is written for Linux and other
// Unix systems; Windows provides neither.
package file
