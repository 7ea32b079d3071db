package lungo

// pixelflow patch 10 (see PATCHES.md): the file store appends each commit's
// changes to a journal instead of rewriting the whole file.
//
// Upstream encoded the whole catalog and rewrote the file (temporary file,
// fsync, rename, fsync of the directory) on every commit, so a commit cost
// the size of the database: with 30,000 idempotency keys held, a keyed
// write wrote 6 MB. Now a commit appends one record to <file>.journal
// holding only what it changed, down to the fields of a document (an
// update of one key of an idempotency bucket records that key), and
// fsyncs it. Once the journal is larger than both CompactAt and the main
// file, the catalog is written to the main file and the journal starts
// again, so the bytes written per commit, compactions included, stay
// proportional to what the commit changed, and both files stay bounded.
//
// Crash safety. A commit is acknowledged only after its record is fsynced.
// Each record carries its length and a CRC-32C; on load, a torn record at
// the journal's end (a commit that never returned) is cut off. The main
// file names its generation and the journal the generation it applies to:
// a compaction writes the main file of generation G+1 (temporary file,
// fsync, rename, fsync of the directory) and only then replaces the
// journal by an empty one of generation G+1 the same way. A crash between
// the two leaves a journal of generation G beside a main file of G+1:
// everything in it is in the main file already, and the load discards it.
//
// Downgrades. A release that reads the single-file format would ignore the
// journal and silently lose every commit in it. The main file of this
// format therefore keeps the catalog under another field and puts, where
// the single-file format keeps its namespaces, one entry that cannot be
// decoded as a namespace and is named so that the older release's error
// says what happened (see FileRefusal).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"

	"go.mongodb.org/mongo-driver/bson"

	"github.com/pixelflow/pixelflow/third_party/lungo/mongokit"
)

// FileFormat is the format of the main file this release writes: 2, a main
// file with a journal. Format 1 (no "format" field) is upstream's single
// file, which is still read and turned into format 2 on load.
const FileFormat = 2

// FileRefusal is the key of the one entry that a format-2 main file holds
// in "namespaces", where format 1 keeps the catalog: a release that reads
// only format 1 fails to decode it as a namespace, and its error names
// this key, so it refuses the file saying why instead of opening it without
// the journal's commits.
const FileRefusal = "FILE WRITTEN BY A NEWER PIXELFLOW (embedded store format 2, with a journal): " +
	"this release cannot read it; run a newer release (docs/operations.md, Upgrades)"

// ErrNewerFileFormat means the main file was written by a newer release.
var ErrNewerFileFormat = errors.New("store file written by a newer release")

// JournalSuffix names the journal next to the main file.
const JournalSuffix = ".journal"

// journalMagic starts a journal's header: the magic, the generation of
// the main file it applies to (little endian), and a CRC-32C of both.
const journalMagic = "LGJRNL02"

const journalHeaderSize = len(journalMagic) + 8 + 4

// recordHeaderSize is a record's length (of its BSON payload) and CRC-32C,
// both little endian uint32.
const recordHeaderSize = 8

// maxRecordSize bounds one record: a larger length in a header is a torn
// or damaged header, not a record to read.
const maxRecordSize = 1 << 30

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// DefaultCompactAt is FileStoreOptions.CompactAt's default.
const DefaultCompactAt = 4 << 20

// FileStoreOptions configure a FileStore.
type FileStoreOptions struct {
	// CompactAt is the journal size in bytes from which a commit also
	// writes the catalog to the main file and starts an empty journal, if
	// the journal is also larger than the main file (so a compaction is
	// paid for by at least as many bytes of records). Default
	// DefaultCompactAt; negative: compact whenever the journal is larger
	// than the main file (for tests).
	CompactAt int64

	// Hook, when set, is called at named points of a commit and a
	// compaction, for crash tests (a hook that SIGKILLs its process):
	// "append:partial" (half a record written), "append:synced",
	// "compact:written" (the new main file synced, not renamed),
	// "compact:renamed" (the new main file in place, the old journal
	// too), "compact:journal" (the new journal in place).
	Hook func(point string)
}

// FileStoreStats count what a FileStore wrote.
type FileStoreStats struct {
	Records        int64 // journal records appended (one per commit that changed something)
	RecordBytes    int64 // their bytes, headers included
	Compactions    int64 // main files written
	CompactedBytes int64 // their bytes
	// WholeNamespaces counts namespaces a record holds in full (created,
	// or changed in a way a record does not express per document).
	WholeNamespaces int64
}

// FileStore keeps the catalog in a main file and a journal of the commits
// since the main file was written (see the top of journal.go).
type FileStore struct {
	path string
	mode os.FileMode
	opts FileStoreOptions

	// last is the catalog the files hold (catalogs are never changed
	// once committed: the next commit is diffed against it).
	last        *Catalog
	generation  int64
	mainSize    int64
	journal     *os.File // nil: a compaction could not start a new journal
	journalSize int64
	// retryCompactAt is the journal size from which a compaction that
	// failed is tried again (0: none failed).
	retryCompactAt int64
	// broken is set when the journal may hold a record that was not
	// acknowledged (its write failed and could not be undone): nothing
	// is appended after it.
	broken error

	records, recordBytes, compactions, compactedBytes, wholeNamespaces atomic.Int64
}

// NewFileStore creates and returns a new file store.
func NewFileStore(path string, mode os.FileMode) *FileStore {
	return NewFileStoreWith(path, mode, FileStoreOptions{})
}

// NewFileStoreWith creates and returns a new file store with options.
func NewFileStoreWith(path string, mode os.FileMode, opts FileStoreOptions) *FileStore {
	if opts.CompactAt == 0 {
		opts.CompactAt = DefaultCompactAt
	}
	if mode == 0 {
		mode = 0o666
	}
	return &FileStore{path: path, mode: mode, opts: opts}
}

// Stats returns what the store wrote so far; safe to call concurrently.
func (s *FileStore) Stats() FileStoreStats {
	return FileStoreStats{
		Records:         s.records.Load(),
		RecordBytes:     s.recordBytes.Load(),
		Compactions:     s.compactions.Load(),
		CompactedBytes:  s.compactedBytes.Load(),
		WholeNamespaces: s.wholeNamespaces.Load(),
	}
}

func (s *FileStore) hook(point string) {
	if s.opts.Hook != nil {
		s.opts.Hook(point)
	}
}

// fileV2 is the main file of format 2.
type fileV2 struct {
	// Refusal is where format 1 keeps its namespaces (see FileRefusal).
	Refusal    map[string]string `bson:"namespaces"`
	Format     int               `bson:"format"`
	Generation int64             `bson:"generation"`
	Catalog    *File             `bson:"catalog"`
}

// Load reads the main file and replays the journal on it. A missing main
// file is an empty catalog. It leaves the files as the next commit needs
// them: a main file of format 2 (written now if it was of format 1 or
// missing) and a journal of its generation without a torn tail.
func (s *FileStore) Load() (*Catalog, error) {
	if s.journal != nil {
		return nil, fmt.Errorf("file store %q: loaded twice", s.path)
	}
	file, format, err := s.readMain()
	if err != nil {
		return nil, err
	}
	jpath := s.path + JournalSuffix
	jbuf, err := os.ReadFile(jpath)
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("read journal: %w", err)
	}
	journalExists := err == nil
	if format == 0 && journalExists {
		return nil, fmt.Errorf("journal %q without its main file %q: refusing to start empty", jpath, s.path)
	}
	valid := -1 // bytes of the journal to keep; -1: start a new one
	if format == FileFormat && journalExists {
		gen, records, err := readJournalHeader(jbuf)
		if err != nil {
			return nil, fmt.Errorf("journal %q: %w", jpath, err)
		}
		switch {
		case gen > s.generation:
			return nil, fmt.Errorf("journal %q is of generation %d, its main file of %d: refusing a main file older than its journal", jpath, gen, s.generation)
		case gen == s.generation:
			if valid, err = replayJournal(file, records); err != nil {
				return nil, fmt.Errorf("journal %q: %w", jpath, err)
			}
			valid += journalHeaderSize
		}
		// gen < s.generation: a compaction wrote the main file and
		// crashed before it replaced the journal; the main file holds
		// every record of it.
	}
	catalog, err := file.BuildCatalog()
	if err != nil {
		return nil, fmt.Errorf("file store %q: %w", s.path, err)
	}
	if _, ok := catalog.Namespaces[Oplog]; !ok {
		// A new file: the engine expects the oplog, as NewCatalog has it.
		catalog.Namespaces[Oplog] = mongokit.NewCollection(false)
	}
	s.last = catalog
	if format != FileFormat {
		// Format 1 or no file: write format 2 before the first record.
		if err := s.writeMain(catalog); err != nil {
			return nil, err
		}
	}
	if valid < 0 {
		if err := s.newJournal(); err != nil {
			return nil, err
		}
		return catalog, nil
	}
	f, err := os.OpenFile(jpath, os.O_WRONLY, s.mode)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	if valid < len(jbuf) {
		// A torn tail: a commit that was never acknowledged.
		if err := f.Truncate(int64(valid)); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("cut the journal's torn tail: %w", err)
		}
		if err := f.Sync(); err != nil {
			_ = f.Close()
			return nil, fmt.Errorf("sync journal: %w", err)
		}
	}
	if _, err := f.Seek(int64(valid), io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("seek journal: %w", err)
	}
	s.journal, s.journalSize = f, int64(valid)
	return catalog, nil
}

// readMain decodes the main file; format 0 means there is none.
func (s *FileStore) readMain() (*File, int, error) {
	buf, err := os.ReadFile(s.path)
	if os.IsNotExist(err) {
		return &File{Namespaces: map[string]FileNamespace{}}, 0, nil
	} else if err != nil {
		return nil, 0, fmt.Errorf("read store file: %w", err)
	}
	s.mainSize = int64(len(buf))
	raw := bson.Raw(buf)
	if err := raw.Validate(); err != nil {
		return nil, 0, fmt.Errorf("store file %q: %w", s.path, err)
	}
	fv, err := raw.LookupErr("format")
	if err != nil {
		// format 1: upstream's single file, without the field
		var file File
		if err := bson.Unmarshal(buf, &file); err != nil {
			return nil, 0, fmt.Errorf("store file %q: %w", s.path, err)
		}
		if file.Namespaces == nil {
			file.Namespaces = map[string]FileNamespace{}
		}
		return &file, 1, nil
	}
	format, ok := fv.AsInt64OK()
	if !ok {
		return nil, 0, fmt.Errorf("store file %q: format is a %s", s.path, fv.Type)
	}
	if format > FileFormat {
		return nil, 0, fmt.Errorf("%w: %q is of format %d, this release reads up to %d", ErrNewerFileFormat, s.path, format, FileFormat)
	}
	var f2 fileV2
	if err := bson.Unmarshal(buf, &f2); err != nil {
		return nil, 0, fmt.Errorf("store file %q: %w", s.path, err)
	}
	if f2.Catalog == nil {
		return nil, 0, fmt.Errorf("store file %q: format %d without a catalog", s.path, format)
	}
	if f2.Catalog.Namespaces == nil {
		f2.Catalog.Namespaces = map[string]FileNamespace{}
	}
	s.generation = f2.Generation
	return f2.Catalog, FileFormat, nil
}

func readJournalHeader(buf []byte) (gen int64, records []byte, err error) {
	if len(buf) < journalHeaderSize || string(buf[:len(journalMagic)]) != journalMagic {
		return 0, nil, fmt.Errorf("not a journal (%d bytes, no header)", len(buf))
	}
	h := buf[:journalHeaderSize]
	if crc32.Checksum(h[:journalHeaderSize-4], castagnoli) != binary.LittleEndian.Uint32(h[journalHeaderSize-4:]) {
		return 0, nil, errors.New("damaged header")
	}
	return int64(binary.LittleEndian.Uint64(h[len(journalMagic):])), buf[journalHeaderSize:], nil
}

func journalHeader(gen int64) []byte {
	h := make([]byte, journalHeaderSize)
	copy(h, journalMagic)
	binary.LittleEndian.PutUint64(h[len(journalMagic):], uint64(gen))
	binary.LittleEndian.PutUint32(h[journalHeaderSize-4:], crc32.Checksum(h[:journalHeaderSize-4], castagnoli))
	return h
}

// Store appends the changes from the last stored catalog to catalog as one
// record and fsyncs it; it returns once they are durable.
func (s *FileStore) Store(catalog *Catalog) error {
	if s.broken != nil {
		return fmt.Errorf("file store %q: %w", s.path, s.broken)
	}
	if s.last == nil {
		return fmt.Errorf("file store %q: Store before Load", s.path)
	}
	if s.journal == nil {
		// The last compaction wrote the main file but could not start
		// its journal: nothing may be appended to the old one.
		if err := s.newJournal(); err != nil {
			return err
		}
	}
	rec, whole := diffCatalogs(s.last, catalog)
	if len(rec.Namespaces) == 0 {
		s.last = catalog
		return nil
	}
	payload, err := bson.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode journal record: %w", err)
	}
	if len(payload) > maxRecordSize {
		return fmt.Errorf("journal record of %d bytes: more than %d", len(payload), maxRecordSize)
	}
	frame := make([]byte, recordHeaderSize+len(payload))
	binary.LittleEndian.PutUint32(frame, uint32(len(payload)))
	binary.LittleEndian.PutUint32(frame[4:], crc32.Checksum(payload, castagnoli))
	copy(frame[recordHeaderSize:], payload)
	if err := s.append(frame); err != nil {
		return err
	}
	s.records.Add(1)
	s.recordBytes.Add(int64(len(frame)))
	s.wholeNamespaces.Add(int64(whole))
	s.last = catalog
	s.maybeCompact()
	return nil
}

// append writes frame at the journal's end and fsyncs it. A failed write
// is cut off again, so the next record follows the last acknowledged one;
// a failed fsync (the kernel may have dropped the pages) or a failed cut
// breaks the store.
func (s *FileStore) append(frame []byte) error {
	write := func(b []byte) error {
		_, err := s.journal.Write(b)
		return err
	}
	var err error
	if s.opts.Hook != nil {
		half := len(frame) / 2
		if err = write(frame[:half]); err == nil {
			s.hook("append:partial")
			err = write(frame[half:])
		}
	} else {
		err = write(frame)
	}
	if err != nil {
		if terr := s.cut(); terr != nil {
			s.broken = fmt.Errorf("journal append failed (%v) and could not be undone: %w", err, terr)
		}
		return fmt.Errorf("append to journal: %w", err)
	}
	if err := s.journal.Sync(); err != nil {
		s.broken = fmt.Errorf("journal fsync failed: %w", err)
		return fmt.Errorf("sync journal: %w", err)
	}
	s.journalSize += int64(len(frame))
	s.hook("append:synced")
	return nil
}

// cut truncates the journal back to its last acknowledged record.
func (s *FileStore) cut() error {
	if err := s.journal.Truncate(s.journalSize); err != nil {
		return err
	}
	_, err := s.journal.Seek(s.journalSize, io.SeekStart)
	return err
}

// maybeCompact writes the main file and starts a new journal once the
// journal is larger than CompactAt and the main file. The commit that
// triggers it is durable already, so a failure does not fail the commit:
// it is tried again once the journal has grown by half again.
func (s *FileStore) maybeCompact() {
	if s.journalSize < s.opts.CompactAt || s.journalSize <= s.mainSize || s.journalSize < s.retryCompactAt {
		return
	}
	if err := s.compact(); err != nil {
		s.retryCompactAt = s.journalSize + s.journalSize/2
		return
	}
	s.retryCompactAt = 0
}

func (s *FileStore) compact() error {
	if err := s.writeMain(s.last); err != nil {
		return err
	}
	s.hook("compact:renamed")
	if err := s.newJournal(); err != nil {
		return err
	}
	s.hook("compact:journal")
	return nil
}

// writeMain writes catalog as the main file of the next generation.
func (s *FileStore) writeMain(catalog *Catalog) error {
	gen := s.generation + 1
	buf, err := bson.Marshal(fileV2{
		Refusal:    map[string]string{FileRefusal: "see docs/operations.md, Upgrades"},
		Format:     FileFormat,
		Generation: gen,
		Catalog:    BuildFile(catalog),
	})
	if err != nil {
		return fmt.Errorf("encode store file: %w", err)
	}
	renamed, err := s.replaceFile(s.path, buf, "compact:written")
	if renamed {
		// In place, if perhaps not durably (the directory's fsync may
		// have failed): the current journal is stale either way, and no
		// record may be appended to it.
		s.generation, s.mainSize = gen, int64(len(buf))
		if s.journal != nil {
			_ = s.journal.Close()
			s.journal = nil
		}
	}
	if err != nil {
		return err
	}
	s.compactions.Add(1)
	s.compactedBytes.Add(int64(len(buf)))
	return nil
}

// newJournal replaces the journal by an empty one of the main file's
// generation and opens it for appending.
func (s *FileStore) newJournal() error {
	jpath := s.path + JournalSuffix
	if _, err := s.replaceFile(jpath, journalHeader(s.generation), ""); err != nil {
		return err // tried again by the next commit
	}
	f, err := os.OpenFile(jpath, os.O_WRONLY, s.mode)
	if err != nil {
		return fmt.Errorf("open journal: %w", err)
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		_ = f.Close()
		return fmt.Errorf("seek journal: %w", err)
	}
	s.journal, s.journalSize = f, int64(journalHeaderSize)
	return nil
}

// replaceFile writes buf to path atomically and durably: a temporary file,
// fsynced, renamed over path, and the directory fsynced. hook (if not "")
// is called between the fsync and the rename. renamed reports whether
// path holds buf now, even when an error follows (the directory's fsync).
func (s *FileStore) replaceFile(path string, buf []byte, hook string) (renamed bool, err error) {
	tmp := path + ".tmp"
	if err := os.Remove(tmp); err != nil && !os.IsNotExist(err) {
		return false, fmt.Errorf("remove %q: %w", tmp, err)
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, s.mode)
	if err != nil {
		return false, fmt.Errorf("create %q: %w", tmp, err)
	}
	defer func() { _ = os.Remove(tmp) }() // gone after the rename
	if _, err := f.Write(buf); err != nil {
		_ = f.Close()
		return false, fmt.Errorf("write %q: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return false, fmt.Errorf("sync %q: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("close %q: %w", tmp, err)
	}
	if hook != "" {
		s.hook(hook)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("rename %q to %q: %w", tmp, path, err)
	}
	dir, err := os.Open(filepath.Dir(path))
	if err != nil {
		return true, fmt.Errorf("open the directory of %q: %w", path, err)
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return true, fmt.Errorf("sync the directory of %q: %w", path, err)
	}
	return true, nil
}

// Close closes the journal (the engine calls it once it stopped
// committing).
func (s *FileStore) Close() error {
	if s.journal == nil {
		return nil
	}
	err := s.journal.Close()
	s.journal = nil
	return err
}
