/**
 * Person names, postal addresses, dates of birth and passport numbers.
 *
 * Names: compromise's lexicon (its ~3,000 first names, ~900 last names, honorifics, and every
 * common English word with its part of speech) decides about candidate runs of capitalised words,
 * together with context cues (a `Name:` label or a JSON `"name"` key, an honorific, a greeting, a
 * verb or preposition that takes a person). compromise's full tagger finds the same names at ~2 ms a
 * sentence (2 s for a 32 KB prompt), too slow for every call; its lexicon lookups cost nothing, and
 * the cues find names that are in no lexicon (`Jonna Wollenberg`, `Penelopa Rutkowski`).
 *
 * Addresses: street-type words of the usual postal formats (USPS street suffixes, German / Dutch /
 * Nordic compound suffixes, the Romance and Polish prefixes), a house number, then optional unit,
 * postal code and town; or an `Address:` label. Dates of birth and passport numbers are only
 * reported next to a cue word (`born`, `DOB`, `geboren`, `passport`, `Reisepass` …), as Presidio
 * does: a date or an 8-character code alone is not personal data.
 */
import { createRequire } from 'node:module';

export interface EntityMatch {
  kind: 'person' | 'address' | 'date_of_birth' | 'passport';
  start: number;
  end: number;
  detector: string;
}

type Lexicon = Record<string, string | string[]>;
let lexicon: Lexicon | undefined;
function lex(): Lexicon {
  if (!lexicon) {
    const nlp = createRequire(import.meta.url)('compromise') as { model(): { one: { lexicon: Lexicon } } };
    lexicon = nlp.model().one.lexicon;
  }
  return lexicon;
}
function tagsOf(word: string): string[] {
  const t = lex()[word.toLowerCase()];
  return t === undefined ? [] : Array.isArray(t) ? t : [t];
}
const NAME_TAGS = new Set(['FirstName', 'MaleName', 'FemaleName', 'LastName', 'Person']);
const PLACE_TAGS = new Set(['City', 'Country', 'Region', 'Place', 'Organization', 'SportsTeam', 'Demonym', 'Currency', 'Unit']);
function isFirstName(w: string): boolean {
  return tagsOf(w).some((t) => t === 'FirstName' || t === 'MaleName' || t === 'FemaleName');
}
/** A word compromise knows as something other than a name (verb, adjective, common noun, place…). */
function isCommonWord(w: string): boolean {
  const tags = tagsOf(w);
  return tags.length > 0 && !tags.some((t) => NAME_TAGS.has(t));
}
function isPlace(w: string): boolean {
  return tagsOf(w).some((t) => PLACE_TAGS.has(t));
}

/** Words that start with a capital in technical text and are never part of a person's name. */
const NOT_NAME_WORDS = new Set(
  ('The This That These Those There Then When Where What Which Who Why How And But Or Not Yes No If Else For While ' +
    'Error Warning Info Debug Note Todo Fixme Hack True False Null None Undefined Nan Api Http Https Json Yaml Xml Html Css Sql ' +
    'Get Post Put Patch Delete Head Options Request Response Server Client Service Docker Kubernetes Linux Windows Mac Ubuntu Debian ' +
    'Github Gitlab Google Amazon Microsoft Apple Azure Aws Slack Stripe Openai Anthropic Nvidia Visual Studio Code Node React Vue ' +
    'Monday Tuesday Wednesday Thursday Friday Saturday Sunday January February March April May June July August September October November December ' +
    'Street Avenue Road Lane Drive Suite Apt Unit Floor Building Room Inc Ltd Llc Gmbh Corp Company Team Project Release Version Test Tests ' +
    'New Old Next Last First Please Thanks Thank Hello Dear Best Regards Kind Sincerely Cheers Ok Okay Sure Here Today Tomorrow Yesterday')
    .split(' '),
);

/** Between a label and its value: `Name: `, `"name": "`, `\"name\": \"` (JSON inside JSON), `name=`. */
const SEP = String.raw`(?:\\?["'])?[ \t]*[:=#]?[ \t]*(?:\\?["'])?`;

// A name word: Capitalised (any script with case), optional hyphenated second part; or an initial.
const W = String.raw`(?:\p{Lu}[\p{Ll}\p{M}]+(?:['’]\p{Lu}?[\p{Ll}\p{M}]+)?(?:-\p{Lu}[\p{Ll}\p{M}]+)?|\p{Lu}['’]\p{Lu}[\p{Ll}\p{M}]+|\p{Lu}\.)`;
const PARTICLE = String.raw`(?:von|van|de|der|den|del|della|degli|di|da|das|do|dos|du|la|le|y|e|ter|ten|zu|af|av|bin|al)`;
const FULL_NAME = String.raw`${W}(?:[ \t]+(?:${PARTICLE}[ \t]+){0,2}${W}){1,3}`;
const SUFFIX = String.raw`(?:,?[ \t]+(?:Jr\.?|Sr\.?|II|III|IV|MD|PhD|DDS|DVM|Esq\.?))?`;
const CJK_NAME = String.raw`[\p{Script=Han}]{1,3}[ \t\u3000]?[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]{1,3}`;

const HONORIFIC = String.raw`(?:Mr|Mrs|Ms|Mx|Miss|Dr|Prof|Sir|Dame|Herr|Frau|Hr|Fr|Mme|Mlle|Sr|Sra|Srta|Sig|Sig\.ra|Dott|Dott\.ssa|Ing|Avv|Pan|Pani|Dhr|Mevr|Mw|Fru)\.?`;
const LABEL = String.raw`(?:(?:full[ _-]?|first[ _-]?|last[ _-]?|customer[ _-]?|client[ _-]?|patient[ _-]?|employee[ _-]?|contact[ _-]?|user[ _-]?|account[ _-]?holder[ _-]?|card[ _-]?holder[ _-]?|sender[ _-]?|recipient[ _-]?|display[ _-]?)?name|customer|client|patient|employee|contact|recipient|sender|assignee|reporter|owner|author|attn|signed|passenger|guest|applicant|tenant|holder|nom|nombre|nome|imię|imie|namn|naam|vorname|nachname|apellidos?|cognome|sobrenome|nazwisko|efternamn|achternaam|氏名|名前|担当者?|お名前)`;

const RE_LABELLED = new RegExp(String.raw`(?<![\p{L}])${LABEL}(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?(?:${HONORIFIC}[ \t]+)?(${FULL_NAME}${SUFFIX}|${W}|${CJK_NAME})`, 'giu');
const RE_HONORIFIC = new RegExp(String.raw`(?<![\p{L}])${HONORIFIC}[ \t]+(${FULL_NAME}${SUFFIX}|${W})`, 'gu');
const CUE_WORDS = String.raw`(?:Dear|Hi|Hello|Hey|Hallo|Liebe[rs]?|Sehr geehrte[rs]?|Bonjour|Cher|Chère|Hola|Estimad[oa]|Ciao|Gentile|Caro|Cara|Olá|Prezad[oa]|Cześć|Szanown[ya]|Hej|Beste|Geachte|with|by|from|to|for|and|contact|ask|asked|called|emailed|met|meet|cc|thanks|mit|von|für|und|avec|pour|et|con|para|por|per|di|com|z|och|med|met|door|voor|en)`;
const RE_CUED = new RegExp(String.raw`(?<![\p{L}])${CUE_WORDS}[ \t]+(${FULL_NAME}${SUFFIX})`, 'gu');
const RE_SIGNOFF = new RegExp(
  String.raw`(?:[Rr]egards|Best|[Tt]hanks|Cheers|Sincerely|Yours|Grüße|Gruß|Cordialement|Salutations|Saludos|[Ss]aluti|Atenciosamente|Abraços|Pozdrawiam|[Hh]älsningar|[Gg]roeten|[Gg]roet)[,!.]?[ \t]*(?:\r?\n|\\n)[ \t]*(?:(?:#|\/\/|--)[ \t]*)?(${FULL_NAME})`,
  'gu',
);
const RE_CJK_CUED = new RegExp(String.raw`(${CJK_NAME})(?:[ \t\u3000]?(?:様|さん|氏|先生|殿|君))`, 'gu');
/** A run of capitalised words anywhere: decided by the lexicon. */
const RE_RUN = new RegExp(String.raw`(?<![\p{L}\p{N}_.@/-])(${FULL_NAME})(?![\p{L}\p{N}_@-]|\.\p{L})`, 'gu');

function wordsOf(name: string): string[] {
  return name.split(/[ \t]+/).filter((w) => /^\p{Lu}/u.test(w));
}

/** Words that open a street name (`Am Vogelkreuz 34b`, `Camino Antonia Urrutia 18`, `Södra Ekgärdet 918`). */
const STREET_OPENERS = new Set(
  ('Am An Auf Im In Zum Zur Unter Norra Södra Östra Västra Övre Undre Lilla Stora Gamla Nya Camino Calle Avenida Apartamento Masía Rotonda ' +
    'Callejón Cuesta Pasaje Paseo Plaza Ronda Riera Colegio Chalet Urbanización Via Viale Piazza Corso Largo Strada Vicolo Contrada Borgo Rotonda ' +
    'Rue Avenue Boulevard Impasse Allée Chemin Place Quai Route Voie Rua Travessa Praça Alameda Estrada Rodovia Marginal Ladeira Vila')
    .split(' '),
);

function plausibleName(name: string): boolean {
  const words = wordsOf(name);
  if (words.length === 0) return false;
  if (STREET_OPENERS.has(words[0]!)) return false;
  if (words.some((w) => NOT_NAME_WORDS.has(w.replace(/[.,]$/, '')))) return false;
  if (words.every((w) => isPlace(w))) return false;
  return true;
}

function pushGroup(out: EntityMatch[], m: RegExpMatchArray, detector: string, kind: EntityMatch['kind'] = 'person'): void {
  const value = m[1]!;
  const start = m.index! + m[0].lastIndexOf(value);
  out.push({ kind, start, end: start + value.length, detector });
}

function detectPersons(text: string, out: EntityMatch[]): void {
  for (const m of text.matchAll(RE_LABELLED)) if (plausibleName(m[1]!) || /\p{Script=Han}/u.test(m[1]!)) pushGroup(out, m, 'name:label');
  for (const m of text.matchAll(RE_HONORIFIC)) if (plausibleName(m[1]!)) pushGroup(out, m, 'name:honorific');
  for (const m of text.matchAll(RE_CUED)) {
    const words = wordsOf(m[1]!);
    // After a cue word the run still needs one word that is no common English word.
    if (plausibleName(m[1]!) && words.some((w) => !isCommonWord(w) || isFirstName(w))) pushGroup(out, m, 'name:cue');
  }
  for (const m of text.matchAll(RE_SIGNOFF)) if (plausibleName(m[1]!)) pushGroup(out, m, 'name:signoff');
  for (const m of text.matchAll(RE_CJK_CUED)) pushGroup(out, m, 'name:cjk-honorific');
  for (const m of text.matchAll(RE_RUN)) {
    const name = m[1]!;
    const words = wordsOf(name);
    if (words.length < 2 || !plausibleName(name)) continue;
    // compromise's lexicon: a known first name followed by a word that is no common word.
    const [first, ...rest] = words;
    if (isFirstName(first!) && rest.every((w) => !isCommonWord(w) || tagsOf(w).includes('LastName'))) {
      out.push({ kind: 'person', start: m.index!, end: m.index! + name.length, detector: 'name:lexicon' });
      continue;
    }
    // Mid-sentence after a lower-case word: two or more words none of which is an English word.
    // (Not at the start of a sentence: German capitalises nouns, `Größere Änderungen an …`.)
    const before = text.slice(Math.max(0, m.index! - 30), m.index!);
    const placed = /\p{Ll}[,]?[ \t]+$/u.test(before);
    if (placed && words.every((w) => !isCommonWord(w) && w.length > 2 && !/^\p{Lu}+$/u.test(w) && !/\p{Lu}.*\p{Lu}/u.test(w.slice(1)))) {
      out.push({ kind: 'person', start: m.index!, end: m.index! + name.length, detector: 'name:unknown-words' });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses

/** USPS Publication 28 street suffixes (primary names and common abbreviations). */
const STREET_SUFFIXES =
  'Alley|Aly|Annex|Arcade|Avenue|Ave|Bayou|Beach|Bend|Bluff|Bluffs|Bottom|Boulevard|Blvd|Branch|Bridge|Brook|Brooks|Burg|Burgs|Bypass|Camp|Canyon|Cape|Causeway|Center|Centers|Circle|Cir|Circles|Cliff|Cliffs|Club|Common|Commons|Corner|Corners|Course|Court|Ct|Courts|Cove|Coves|Creek|Crescent|Crest|Crossing|Crossroad|Curve|Dale|Dam|Divide|Drive|Dr|Drives|Estate|Estates|Expressway|Extension|Extensions|Fall|Falls|Ferry|Field|Fields|Flat|Flats|Ford|Fords|Forest|Forge|Forges|Fork|Forks|Fort|Freeway|Garden|Gardens|Gateway|Glen|Glens|Green|Greens|Grove|Groves|Harbor|Harbors|Haven|Heights|Highway|Hwy|Hill|Hills|Hollow|Inlet|Island|Islands|Isle|Junction|Junctions|Key|Keys|Knoll|Knolls|Lake|Lakes|Land|Landing|Lane|Ln|Light|Lights|Loaf|Lock|Locks|Lodge|Loop|Mall|Manor|Manors|Meadow|Meadows|Mews|Mill|Mills|Mission|Motorway|Mount|Mountain|Mountains|Neck|Orchard|Oval|Overpass|Park|Parks|Parkway|Pkwy|Pass|Passage|Path|Pike|Pine|Pines|Place|Pl|Plain|Plains|Plaza|Point|Points|Port|Ports|Prairie|Radial|Ramp|Ranch|Rapid|Rapids|Rest|Ridge|Ridges|River|Road|Rd|Roads|Route|Row|Rue|Run|Shoal|Shoals|Shore|Shores|Skyway|Spring|Springs|Spur|Spurs|Square|Sq|Squares|Station|Stravenue|Stream|Street|St|Streets|Summit|Terrace|Ter|Throughway|Trace|Track|Trafficway|Trail|Trl|Trailer|Tunnel|Turnpike|Underpass|Union|Unions|Valley|Valleys|Viaduct|View|Views|Village|Villages|Ville|Vista|Walk|Walks|Wall|Way|Ways|Well|Wells|Close|Drove|Gate|Glade|Rise|Wharf|Wynd|Parade|Promenade|Quay|Embankment|Approach|Hall|Cottages|Yard|Grange|Croft|Fold|Brow|Chase|Garth|Hey|Lea|Nook|Paddock|Side|Spinney|Vale|Wood|Courtyard|Circus|Bank|Leys|End|Fields|Heath|Downs|Ride|Moor';
const UNIT = String.raw`(?:,?[ \t]+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Flat|Floor|Fl\.?|Room|Rm\.?|#|Zimmer|Hus|lgh|Whg\.?|Wohnung|\d+\.?[ \t]?OG|Stock|étage|Étage|Appartamento|Piano|Interno|Int\.?|Apto\.?|Casa|Bloco|Lgh\.?|m\.|lok\.|Bajo|Piso|Puerta|Izda\.?|Dcha\.?|\d+º|bus|hoog|I{1,3})[ \t]?(?:[\p{L}\d][\p{L}\d.-]*)?(?:[ \t]+(?:\d+[ºª]?|[A-Z]|hoog|OG|étage|Izda\.?|Dcha\.?))*)?`;
const NAME_WORD = String.raw`(?:\p{Lu}[\p{L}\p{M}'’.-]*|\d+(?:st|nd|rd|th)|(?:${PARTICLE}|des|aux|du|l'|d'|dei|delle|dello|das|dos|do))`;
const HOUSE = String.raw`\d{1,5}[ \t]?[a-zA-Z]?(?![\p{L}\d])`;
const POSTAL_TAIL = String.raw`(?:,?[ \t\r\n]+(?:(?:\d{5}(?:-\d{4})?|\d{4}[ \t]?[A-Z]{2}|\d{2}-\d{3}|\d{3}[ \t]?\d{2}|\d{4}|\d{5}-\d{3}|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2})[ \t]+(?:\p{Lu}[\p{L}'’.-]+)(?:[ \t-]+\p{Lu}[\p{L}'’.-]+){0,2}|(?:\p{Lu}[\p{L}'’.-]+)(?:[ \t-]+\p{Lu}[\p{L}'’.-]+){0,2},?[ \t]+(?:[A-Z]{2}[ \t]+)?(?:\d{5}(?:-\d{4})?|\d{4}[ \t]?[A-Z]{2}|\d{2}-\d{3}|\d{3}[ \t]?\d{2}|\d{5}-\d{3}|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2})))?`;

const RE_ADDR_EN = new RegExp(
  String.raw`(?<![\p{L}\d.])${HOUSE}[ \t]+(?:[NSEW]\.?[ \t]+)?(?:${NAME_WORD}[ \t]+){1,4}(?:${STREET_SUFFIXES})\.?(?![\p{L}])${UNIT}${POSTAL_TAIL}`,
  'gu',
);
const COMPOUND = String.raw`(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer|chaussee|steig|pfad|markt|kamp|berg|feld|hof|garten|gatan|gata|vägen|väg|gränd|torget|backe|stigen|leden|straat|laan|plein|gracht|dijk|kade|singel|steeg|park|plantsoen|hof|dreef|pad|veld|wal|vej|gade|gaten|veien)`;
/** Where a compound street name ends: the suffix and the house number (cheap to search for). */
const RE_COMPOUND_HIT = new RegExp(String.raw`${COMPOUND}[ \t]+\d`, 'giu');
/** The full compound address, matched (sticky) from a word start found by walking back from a hit. */
const RE_ADDR_COMPOUND = new RegExp(
  String.raw`(?<![\p{L}\d])(?:(?:Am|An|Auf|Im|In|Zum|Zur|Unter|Alte[rn]?|Neue[rn]?|Norra|Södra|Östra|Västra|Lilla|Stora)[ \t]+)?(?:\p{Lu}[\p{L}\p{M}-]*[ \t-]+){0,3}\p{Lu}?[\p{L}\p{M}-]*${COMPOUND}[ \t]+\d{1,5}[ \t]?[a-zA-Z]?(?![\p{L}\d])${UNIT}${POSTAL_TAIL}`,
  'iuy',
);
const PREFIX = String.raw`(?:Rue|Avenue|Av\.|Boulevard|Bd|Impasse|Allée|Chemin|Place|Quai|Route|Cours|Voie|Passage|Square|Via|Viale|Piazza|Piazzale|Corso|Largo|Vicolo|Strada|Contrada|Borgo|Calle|C\.|Avenida|Avda\.?|Plaza|Paseo|Camino|Carrera|Carretera|Ronda|Travesía|Rambla|Riera|Urbanización|Colegio|Chalet|Glorieta|Apartamento|Masía|Rotonda|Callejón|Cuesta|Pasaje|Polígono|Barrio|Partida|Sector|Edificio|Bajada|Subida|Vía|Rua|Travessa|Praça|Alameda|Estrada|Rodovia|Marginal|Largo|Ladeira|Vila|Ul\.|ul\.|ulica|al\.|Al\.|aleja|pl\.|Pl\.|plac|os\.|osiedle|rynek|wyb\.|wyspa|skwer|bulw\.|szosa|droga|park|ogród|bulwar|rondo|wyb\.|plac)`;
const RE_ADDR_PREFIX = new RegExp(
  String.raw`(?<![\p{L}\d])(?:${HOUSE},?[ \t]+)?${PREFIX}[ \t]+(?:${NAME_WORD}[ \t]+){0,4}?${NAME_WORD}(?:,?[ \t]+(?:\d{1,5}[ \t]?[a-zA-Z]?(?![\p{L}\d])|s\/n\.?))?${UNIT}${POSTAL_TAIL}`,
  'gu',
);
/** German / Nordic street names that are a preposition or direction plus a name: `Am Vogelkreuz 34b`, `Södra Ekgärdet 918`. */
const RE_ADDR_OPENER = new RegExp(
  String.raw`(?<![\p{L}\d])(?:Am|An|Auf|Im|In der|Zum|Zur|Unter den|Hinter der|Norra|Södra|Östra|Västra|Övre|Undre|Lilla|Stora|Gamla|Nya)[ \t]+\p{Lu}[\p{L}\p{M}-]+(?:[ \t]+\p{Lu}[\p{L}\p{M}-]+)?[ \t]+\d{1,5}[ \t]?[a-zA-Z]?(?![\p{L}\d])${UNIT}${POSTAL_TAIL}`,
  'gu',
);
const RE_ADDR_JA = /(?:[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}]{1,12}[都道府県市区町村郡])*\d{1,4}丁目\d{1,4}番(?:地)?\d{0,4}号?(?:[ \t\u3000]?[\p{Script=Han}\p{Script=Katakana}\p{Script=Hiragana}]{0,8}\d{1,5}号室)?/gu;
const ADDRESS_LABEL = String.raw`(?:(?:home|postal|mailing|billing|shipping|street|delivery|residential|current|permanent)[ _-]?)?(?:address|addr|adresse|anschrift|wohnort|dirección|direccion|domicilio|indirizzo|endereço|endereco|morada|adres|adress|住所|所在地)`;
const RE_ADDR_LABEL = new RegExp(String.raw`(?<![\p{L}])${ADDRESS_LABEL}(?:\\?["'])?[ \t]*[:=][ \t]*(?:\\?["'])?([^\n"'<>{}\\]{6,120}?)(?=["'\n<>{}\\]|$)`, 'giu');

function detectAddresses(text: string, out: EntityMatch[]): void {
  const add = (start: number, end: number, detector: string): void => {
    // Trim trailing punctuation the greedy parts took.
    while (end > start && /[\s,.;:]/.test(text[end - 1]!)) end--;
    if (end - start >= 6) out.push({ kind: 'address', start, end, detector });
  };
  if (/\d/.test(text)) {
    for (const m of text.matchAll(RE_ADDR_EN)) add(m.index!, m.index! + m[0].length, 'address:street-suffix');
    // The compound pattern would try every letter as a start: find suffix + number first, then
    // try starts at up to 4 word boundaries before it.
    let coveredTo = -1;
    for (const hit of text.matchAll(RE_COMPOUND_HIT)) {
      if (hit.index! < coveredTo) continue;
      const starts: number[] = [];
      let i = hit.index!;
      while (i > 0 && /[\p{L}\p{M}-]/u.test(text[i - 1]!)) i--;
      starts.push(i);
      for (let k = 0; k < 3 && i > 0; k++) {
        let j = i - 1;
        if (!/[ \t]/.test(text[j]!)) break;
        while (j > 0 && /[ \t]/.test(text[j - 1]!)) j--;
        let w = j;
        while (w > 0 && /[\p{L}\p{M}-]/u.test(text[w - 1]!)) w--;
        if (w === j) break;
        i = w;
        starts.push(i);
      }
      for (const start of starts.reverse()) {
        RE_ADDR_COMPOUND.lastIndex = start;
        const m = RE_ADDR_COMPOUND.exec(text);
        if (m && start + m[0].length > hit.index!) {
          add(start, start + m[0].length, 'address:compound-street');
          coveredTo = start + m[0].length;
          break;
        }
      }
    }
    for (const m of text.matchAll(RE_ADDR_PREFIX)) {
      // A Romance/Polish street word alone (`Via Roma`) needs a house number next to it.
      if (!/\d|s\/n/.test(m[0])) continue;
      add(m.index!, m.index! + m[0].length, 'address:street-prefix');
    }
    for (const m of text.matchAll(RE_ADDR_OPENER)) add(m.index!, m.index! + m[0].length, 'address:street-opener');
    if (text.includes('丁目')) for (const m of text.matchAll(RE_ADDR_JA)) add(m.index!, m.index! + m[0].length, 'address:ja-chome');
  }
  for (const m of text.matchAll(RE_ADDR_LABEL)) {
    const value = m[1]!;
    // A labelled value is an address when it has a number and a word (not `address: 0x7ffe…`).
    if (!/\d/.test(value) || !/\p{L}{3,}/u.test(value) || /^0x[0-9a-f]+$/i.test(value.trim()) || /^[\d.:]+$/.test(value.trim())) continue;
    const start = m.index! + m[0].lastIndexOf(value);
    add(start, start + value.length, 'address:label');
  }
}

// ---------------------------------------------------------------------------------------------
// Dates of birth and passports (cue words required)

const MONTHS =
  'Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?|Januar|Februar|März|Mai|Juni|Juli|Oktober|Dezember|janvier|février|mars|avril|mai|juin|juillet|août|septembre|octobre|novembre|décembre|enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|noviembre|diciembre|gennaio|febbraio|aprile|maggio|giugno|luglio|settembre|ottobre|dicembre|janeiro|fevereiro|março|maio|junho|julho|setembro|outubro|dezembro';
const DATE = String.raw`(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}(?:T[\d:.]+Z?)?|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}|\d{1,2}\.?[ \t]+(?:de[ \t]+)?(?:${MONTHS})\.?,?[ \t]+(?:de[ \t]+)?\d{4}|(?:${MONTHS})\.?[ \t]+\d{1,2}(?:st|nd|rd|th)?,?[ \t]+\d{4}|\d{4}年\d{1,2}月\d{1,2}日)`;
const DOB_CUE = String.raw`(?:date[ _-]?of[ _-]?birth|birth[ _-]?date|birthdate|birthday|d\.?o\.?b\.?|born(?:[ \t]+on)?|geboren(?:[ \t]+am)?|geburtsdatum|geb\.|né(?:e)?[ \t]+le|date[ \t]+de[ \t]+naissance|fecha[ \t]+de[ \t]+nacimiento|nacid[oa][ \t]+el|data[ \t]+di[ \t]+nascita|nat[oa][ \t]+il|data[ \t]+de[ \t]+nascimento|nascid[oa][ \t]+em|geboortedatum|geboren[ \t]+op|data[ \t]+urodzenia|urodzon[ya][ \t]+|födelsedatum|född|生年月日|誕生日)`;
const RE_DOB = new RegExp(String.raw`${DOB_CUE}${SEP}(${DATE})`, 'giu');

const PASSPORT_CUE = String.raw`(?:passport|pass(?:port)?[ \t]*(?:no|nr|number|#)|reisepass(?:nummer)?|passnummer|passeport|n°[ \t]+de[ \t]+passeport|pasaporte|passaporto|passaporte|paspoort(?:nummer)?|paszport(?:u)?|pass(?:nummer)?|旅券番号|パスポート番号?|护照号码?)`;
const RE_PASSPORT = new RegExp(
  String.raw`${PASSPORT_CUE}(?:[ \t]+(?:no\.?|nr\.?|number|num\.?|#|n°|nº|número|numero|numer|nummer))?${SEP}(?<![A-Z0-9])([A-Z0-9]{6,10})(?![A-Za-z0-9])`,
  'giu',
);

function detectDobAndPassport(text: string, out: EntityMatch[]): void {
  for (const m of text.matchAll(RE_DOB)) pushGroup(out, m, 'dob:cue', 'date_of_birth');
  for (const m of text.matchAll(RE_PASSPORT)) {
    // Passport numbers of every ICAO 9303 issuer: 6–10 letters and digits, at least two digits.
    if ((m[1]!.match(/\d/g) ?? []).length < 2) continue;
    pushGroup(out, m, 'passport:cue', 'passport');
  }
}

export interface EntityOptions {
  person: boolean;
  address: boolean;
  date_of_birth: boolean;
  passport: boolean;
}

export function detectEntities(text: string, enabled: EntityOptions): EntityMatch[] {
  const out: EntityMatch[] = [];
  if (enabled.person) detectPersons(text, out);
  if (enabled.address) detectAddresses(text, out);
  if ((enabled.date_of_birth || enabled.passport) && /\d/.test(text)) {
    detectDobAndPassport(text, out);
  }
  return out.filter((d) => enabled[d.kind]);
}

