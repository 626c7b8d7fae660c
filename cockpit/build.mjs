// Builds the Cockpit package in dist/: the page's own files from src/
// and one stylesheet of the PatternFly parts the page uses. Nothing is
// fetched: everything comes from node_modules, installed by `npm ci` from
// the committed lock file. No fonts are shipped: the stylesheet takes the
// Red Hat fonts Cockpit itself serves under /cockpit/static/fonts, as
// Cockpit's own pages do, and drops the faces Cockpit does not have (the
// variable fonts and the icon fonts, which the page does not use).
import { copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const patternfly = join(here, "node_modules", "@patternfly", "patternfly");
const dist = join(here, "dist");

// Cockpit's own pages are PatternFly 5; the page uses these parts of it
// (each one's classes appear in src/; a part no class needs is not shipped).
const parts = [
    "patternfly-base.css",
    "components/Alert/alert.css",
    "components/Backdrop/backdrop.css",
    "components/Button/button.css",
    "components/Card/card.css",
    "components/Check/check.css",
    "components/ClipboardCopy/clipboard-copy.css",
    "components/Form/form.css",
    "components/FormControl/form-control.css",
    "components/ModalBox/modal-box.css",
    "components/Page/page.css",
    "components/Table/table.css",
    "components/Title/title.css",
    "components/Toolbar/toolbar.css",
    "layouts/Bullseye/bullseye.css",
    "layouts/Stack/stack.css",
];

// What cockpit-ws serves in /cockpit/static/fonts (cockpit-ws 239 on).
const cockpitFonts = new Set(["Display", "Mono", "Text"].flatMap(family =>
    ["Regular", "Italic", "Medium", "MediumItalic", "Bold", "BoldItalic"]
            .map(style => `RedHat${family}-${style}.woff2`)));
// From /cockpit/@localhost/apikey/ (or /cockpit/$hash/apikey/).
const cockpitFontsUrl = "../../static/fonts/";

function useCockpitFonts(css) {
    return css.replace(/@font-face\s*\{[^}]*\}/g, face => {
        const urls = [...face.matchAll(/url\((["']?)([^"')]+)\1\)/g)].map(m => m[2]);
        if (urls.length === 0 || !urls.every(url => cockpitFonts.has(basename(url))))
            return "";
        return face.replace(/url\((["']?)([^"')]+)\1\)/g,
                            (_, quote, url) => `url(${quote}${cockpitFontsUrl}${basename(url)}${quote})`);
    });
}

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });

const css = parts.map(part => `/* @patternfly/patternfly ${part} */\n` +
    useCockpitFonts(readFileSync(join(patternfly, part), "utf8"))).join("\n");
if (/url\((["']?)\.?\.?\/?assets\//.test(css))
    throw new Error("the stylesheet still names a PatternFly asset that is not shipped");
writeFileSync(join(dist, "patternfly.css"), css);

for (const name of readdirSync(join(here, "src")))
    copyFileSync(join(here, "src", name), join(dist, name));

console.log(`cockpit/dist: ${readdirSync(dist).length} files`);
