/**
 * Every Wechaty puppet API the iLink channel cannot do, each throwing `NotSupported` ("… is not
 * supported by the ilink channel") at once: rooms, room invitations, friendships, the contact
 * list and contact details, the bot's own profile, recall, forward, cards, links, mini
 * programs, locations, tags and posts. PuppetIlink extends this and implements the rest.
 */
import type { FileBoxInterface } from 'file-box'
import * as PUPPET from 'wechaty-puppet'
import { NotSupportedError } from './errors.js'

export abstract class UnsupportedIlinkApis extends PUPPET.Puppet {
  /* ------------------------------------------------------------ messages */

  override async messageRecall(_messageId: string): Promise<boolean> {
    throw new NotSupportedError('recalling a message')
  }

  override async messageForward(_conversationId: string, _messageId: string): Promise<void> {
    throw new NotSupportedError('forwarding a message')
  }

  override async messageSendContact(_conversationId: string, _contactId: string): Promise<void> {
    throw new NotSupportedError('sending a contact card')
  }

  override async messageSendUrl(_conversationId: string, _urlLinkPayload: PUPPET.payloads.UrlLink): Promise<void> {
    throw new NotSupportedError('sending a URL link card')
  }

  override async messageSendMiniProgram(_conversationId: string, _payload: PUPPET.payloads.MiniProgram): Promise<void> {
    throw new NotSupportedError('sending a mini program')
  }

  override async messageSendLocation(_conversationId: string, _payload: PUPPET.payloads.Location): Promise<void> {
    throw new NotSupportedError('sending a location')
  }

  override async messageContact(_messageId: string): Promise<string> {
    throw new NotSupportedError('contact card messages')
  }

  override async messageUrl(_messageId: string): Promise<PUPPET.payloads.UrlLink> {
    throw new NotSupportedError('URL link messages')
  }

  override async messageMiniProgram(_messageId: string): Promise<PUPPET.payloads.MiniProgram> {
    throw new NotSupportedError('mini program messages')
  }

  override async messageLocation(_messageId: string): Promise<PUPPET.payloads.Location> {
    throw new NotSupportedError('location messages')
  }

  /* ------------------------------------------------------------ contacts */

  override async contactList(): Promise<string[]> {
    throw new NotSupportedError('the contact list')
  }

  override contactAlias(contactId: string): Promise<string>
  override contactAlias(contactId: string, alias: string | null): Promise<void>
  override async contactAlias(_contactId: string, alias?: string | null): Promise<string | void> {
    if (alias === undefined) return ''
    throw new NotSupportedError('setting a contact alias')
  }

  override contactAvatar(contactId: string): Promise<FileBoxInterface>
  override contactAvatar(contactId: string, file: FileBoxInterface): Promise<void>
  override async contactAvatar(_contactId: string, _file?: FileBoxInterface): Promise<FileBoxInterface | void> {
    throw new NotSupportedError('contact avatars')
  }

  override contactPhone(contactId: string, phoneList: string[]): Promise<void>
  override async contactPhone(_contactId: string, _phoneList?: string[]): Promise<void> {
    throw new NotSupportedError('contact phone numbers')
  }

  override async contactCorporationRemark(_contactId: string, _remark: string | null): Promise<void> {
    throw new NotSupportedError('contact remarks')
  }

  override async contactDescription(_contactId: string, _description: string | null): Promise<void> {
    throw new NotSupportedError('contact descriptions')
  }

  override async contactSelfQRCode(): Promise<string> {
    throw new NotSupportedError("the bot's own QR code")
  }

  override async contactSelfName(_name: string): Promise<void> {
    throw new NotSupportedError("renaming the bot")
  }

  override async contactSelfSignature(_signature: string): Promise<void> {
    throw new NotSupportedError("the bot's signature")
  }

  /* ------------------------------------------------------------ rooms, friendships, tags, posts: none */

  override async roomList(): Promise<string[]> {
    throw new NotSupportedError('rooms')
  }

  override async roomRawPayload(_roomId: string): Promise<PUPPET.payloads.Room> {
    throw new NotSupportedError('rooms')
  }

  override async roomRawPayloadParser(_payload: PUPPET.payloads.Room): Promise<PUPPET.payloads.Room> {
    throw new NotSupportedError('rooms')
  }

  override async roomCreate(_contactIdList: string[], _topic?: string): Promise<string> {
    throw new NotSupportedError('creating rooms')
  }

  override async roomAdd(_roomId: string, _contactId: string): Promise<void> {
    throw new NotSupportedError('rooms')
  }

  override async roomDel(_roomId: string, _contactId: string): Promise<void> {
    throw new NotSupportedError('rooms')
  }

  override async roomQuit(_roomId: string): Promise<void> {
    throw new NotSupportedError('rooms')
  }

  override roomTopic(roomId: string): Promise<string>
  override roomTopic(roomId: string, topic: string): Promise<void>
  override async roomTopic(_roomId: string, _topic?: string): Promise<string | void> {
    throw new NotSupportedError('rooms')
  }

  override roomAnnounce(roomId: string): Promise<string>
  override roomAnnounce(roomId: string, text: string): Promise<void>
  override async roomAnnounce(_roomId: string, _text?: string): Promise<string | void> {
    throw new NotSupportedError('rooms')
  }

  override async roomQRCode(_roomId: string): Promise<string> {
    throw new NotSupportedError('rooms')
  }

  override async roomAvatar(_roomId: string): Promise<FileBoxInterface> {
    throw new NotSupportedError('rooms')
  }

  override async roomMemberList(_roomId: string): Promise<string[]> {
    throw new NotSupportedError('rooms')
  }

  override async roomMemberRawPayload(_roomId: string, _contactId: string): Promise<PUPPET.payloads.RoomMember> {
    throw new NotSupportedError('rooms')
  }

  override async roomMemberRawPayloadParser(_payload: PUPPET.payloads.RoomMember): Promise<PUPPET.payloads.RoomMember> {
    throw new NotSupportedError('rooms')
  }

  override async roomInvitationAccept(_roomInvitationId: string): Promise<void> {
    throw new NotSupportedError('room invitations')
  }

  override async roomInvitationRawPayload(_roomInvitationId: string): Promise<unknown> {
    throw new NotSupportedError('room invitations')
  }

  override async roomInvitationRawPayloadParser(_rawPayload: unknown): Promise<PUPPET.payloads.RoomInvitation> {
    throw new NotSupportedError('room invitations')
  }

  override async friendshipRawPayload(_friendshipId: string): Promise<unknown> {
    throw new NotSupportedError('friendships')
  }

  override async friendshipRawPayloadParser(_rawPayload: unknown): Promise<PUPPET.payloads.Friendship> {
    throw new NotSupportedError('friendships')
  }

  override async friendshipSearchPhone(_phone: string): Promise<string | null> {
    throw new NotSupportedError('friendships')
  }

  override async friendshipSearchWeixin(_weixin: string): Promise<string | null> {
    throw new NotSupportedError('friendships')
  }

  override async friendshipAdd(_contactId: string, _options: PUPPET.types.FriendshipAddOptions): Promise<void> {
    throw new NotSupportedError('friendships')
  }

  override async friendshipAccept(_friendshipId: string): Promise<void> {
    throw new NotSupportedError('friendships')
  }

  override async tagContactAdd(_tagId: string, _contactId: string): Promise<void> {
    throw new NotSupportedError('tags')
  }

  override async tagContactRemove(_tagId: string, _contactId: string): Promise<void> {
    throw new NotSupportedError('tags')
  }

  override async tagContactDelete(_tagId: string): Promise<void> {
    throw new NotSupportedError('tags')
  }

  override tagContactList(): Promise<string[]>
  override tagContactList(contactId: string): Promise<string[]>
  override async tagContactList(_contactId?: string): Promise<string[]> {
    throw new NotSupportedError('tags')
  }

  override async postRawPayload(_postId: string): Promise<unknown> {
    throw new NotSupportedError('posts')
  }

  override async postRawPayloadParser(_rawPayload: unknown): Promise<PUPPET.payloads.Post> {
    throw new NotSupportedError('posts')
  }

  override async postPublish(_payload: PUPPET.payloads.Post): Promise<void> {
    throw new NotSupportedError('posts')
  }

  override async postSearch(_filter: PUPPET.filters.Post, _pagination?: PUPPET.filters.PaginationRequest): Promise<PUPPET.filters.PaginationResponse<string[]>> {
    throw new NotSupportedError('posts')
  }

  override async tap(_postId: string, _type?: PUPPET.types.Tap, _tap?: boolean): Promise<void | boolean> {
    throw new NotSupportedError('posts')
  }

  override async tapSearch(_postId: string, _query?: PUPPET.filters.Tap, _pagination?: PUPPET.filters.PaginationRequest): Promise<PUPPET.filters.PaginationResponse<PUPPET.payloads.Tap>> {
    throw new NotSupportedError('posts')
  }
}
