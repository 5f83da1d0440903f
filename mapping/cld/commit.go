package cld

import "crs/mapping"

// personGroup turns a person's changed resources into writes, each with its
// Provenance.
func (im *importer) personGroup(p *person) mapping.Group {
	return im.run.Writes(append([]*mapping.State{p.patient}, p.episodes...), p.sources)
}
